"""Expected events of the epidemiological model, derived from the world (not from the files).

Only world rows count: DCIR lines of role 0 (partial régularisations with their net quantity and
amounts), PMSI stays of role 0 and ACE visits of role 0, of the source families the delivery holds
(variants dcir_only, pmsi_only, referential_only). See docs/synthetic-data.md for the exact
definitions.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import ace as A
from . import dcir as D
from . import pmsi as P
from .codes import Codes
from .drugs import Drugs
from .fmt import NULL_DAY, s_cents, s_const, s_date, s_fixed, s_int, s_take, s_zero_pad, ymd
from .variants import ALL_SOURCES
from .world import DEATH_SOURCES, Patients, Providers

EVENT_COLUMNS = {
    "patients": ["patient_id", "sex", "birth_year", "birth_month", "death_date", "incoherent_death", "last_contact_date"],
    "deaths_by_source": ["patient_id", "source", "death_date"],
    "diagnoses": ["patient_id", "code", "source", "diagnosis_type", "date", "end_date", "year"],
    "procedures": ["patient_id", "code", "date", "source"],
    "consults": ["patient_id", "date", "PRS_NAT_REF", "PSE_SPE_COD"],
    "biology": ["patient_id", "date", "code", "quantity"],
    "devices": ["patient_id", "date", "code", "quantity"],
    "drug_dispensations": ["patient_id", "date", "cip13", "atc", "quantity", "ddd"],
    "stays": ["patient_id", "source", "eta_num", "stay_id", "start_date", "end_date", "ENT_MOD", "SOR_MOD", "ghm"],
    "cmuc": ["patient_id", "year"],
    "costs_outpatient": ["patient_id", "date", "end_date", "PRS_NAT_REF", "category", "paid", "base", "reimbursed"],
    "costs_hospital_stays": ["patient_id", "source", "eta_num", "stay_id", "start_date", "end_date", "valuation", "base",
                             "reimbursed"],
    "costs_hospital_extras": ["patient_id", "source", "eta_num", "stay_id", "date", "kind", "code", "quantity", "amount"],
    "costs_patient_year": ["patient_id", "year", "total", "consult", "procedure", "drug", "biology", "device", "transport",
                           "other", "hospital_mco", "hospital_ace", "hospital_ssr", "hospital_had", "hospital_rip",
                           "hospital_extras"],
}
OUTPATIENT_CATEGORIES = ("consult", "procedure", "drug", "biology", "device", "transport", "other")
HOSPITAL_SOURCES = ("MCO", "ACE", "SSR", "HAD", "RIP")
PATIENT_YEAR_COLUMNS = OUTPATIENT_CATEGORIES + tuple(f"hospital_{s.lower()}" for s in HOSPITAL_SOURCES) + ("hospital_extras",)
# sort keys: typed columns, in this order (then the remaining columns)
SORT_KEYS = {
    "patients": ["patient_id"],
    "deaths_by_source": ["patient_id", "source"],
    "diagnoses": ["patient_id", "date", "source", "diagnosis_type", "code", "end_date"],
    "procedures": ["patient_id", "date", "source", "code"],
    "consults": ["patient_id", "date", "PRS_NAT_REF", "PSE_SPE_COD"],
    "biology": ["patient_id", "date", "code", "quantity"],
    "devices": ["patient_id", "date", "code", "quantity"],
    "drug_dispensations": ["patient_id", "date", "cip13", "quantity"],
    "stays": ["patient_id", "start_date", "source", "eta_num", "stay_id"],
    "cmuc": ["patient_id", "year"],
    "costs_outpatient": ["patient_id", "date", "PRS_NAT_REF", "end_date", "category", "paid", "base", "reimbursed"],
    "costs_hospital_stays": ["patient_id", "start_date", "source", "eta_num", "stay_id"],
    "costs_hospital_extras": ["patient_id", "date", "kind", "code", "source", "eta_num", "stay_id", "quantity", "amount"],
    "costs_patient_year": ["patient_id", "year"],
}


def _iso(days):
    return s_date(days, "iso")


def _table(name: str, cols: dict, sort: dict) -> tuple[dict, np.ndarray]:
    """Sort rows by typed keys `sort` (name -> numpy array, already aligned); return string columns."""
    n = len(next(iter(cols.values())))
    keys = [sort[k] for k in reversed(SORT_KEYS[name])]
    order = np.lexsort(keys) if n else np.zeros(0, np.int64)
    idx = pa.array(order)
    return {k: cols[k].take(idx) for k in EVENT_COLUMNS[name]}


_NONE = np.zeros(0, np.int64)


def death_sources(sources) -> tuple[str, ...]:
    """The death sources a delivery holds: IR_BEN_R, DCIR (ER_PRS_F), PMSI (MCO stays), KI_CCI_R (which
    reaches the patient through IR_BEN_R's BEN_IDT_ANO, so it needs IR_BEN_R too)."""
    have = {"IR_BEN_R": "IR_BEN_R" in sources, "DCIR": "DCIR" in sources, "PMSI": "PMSI" in sources,
            "KI_CCI_R": "KI" in sources and "IR_BEN_R" in sources}
    return tuple(s for s in DEATH_SOURCES if have[s])


def build_events(p: Patients, prov: Providers, drugs: Drugs, codes: Codes, d: D.Dcir, pm: P.Pmsi, ace: A.Ace,
                 sources=ALL_SOURCES) -> tuple[dict, dict]:
    """The event tables {name: {column: pa strings}} and the manifest's `cost_exclusions`, over the source
    families the delivery holds (`sources`: an absent source gives no event, no death, no cost)."""
    ev = {}
    L = d.lines
    w = np.flatnonzero(L["role"] == D.ROLE_WORLD) if "DCIR" in sources else _NONE
    pid, dtd = L["pid"][w], L["dtd"][w]
    psa = p.psa
    psa_rank = np.argsort(np.argsort(psa))  # patient_id order for sorting

    st = pm.stays
    ws = np.flatnonzero(st["role"] == P.ROLE_WORLD) if "PMSI" in sources else _NONE
    s_pid, s_start, s_end, s_src = st["pid"][ws], st["start"][ws], st["end"][ws], st["src"][ws]
    ald = np.arange(len(p.ald_pid)) if "IR_IMB_R" in sources else _NONE

    # ------------------------------------------------------------------ deaths by source
    dsrc = death_sources(sources)
    rows_pid, rows_src, rows_date = [_NONE], [_NONE], [_NONE]
    for j, s in enumerate(DEATH_SOURCES):
        if s not in dsrc:
            continue
        m = np.flatnonzero(p.death_src[s] != NULL_DAY)
        rows_pid.append(m)
        rows_src.append(np.full(len(m), j))
        rows_date.append(p.death_src[s][m])
    rp, rs, rd = np.concatenate(rows_pid), np.concatenate(rows_src), np.concatenate(rows_date)
    srcnames = np.array(DEATH_SOURCES)
    ev["deaths_by_source"] = _table("deaths_by_source", {
        "patient_id": s_take(psa, rp), "source": s_take(srcnames, rs), "death_date": _iso(rd),
    }, {"patient_id": psa_rank[rp], "source": np.argsort(np.argsort(srcnames))[rs]})

    # ------------------------------------------------------------------ patients
    # every IR_BEN_R beneficiary and every patient of the events (kept DCIR lines, kept stays, deaths,
    # diagnoses: ALD patients are IR_BEN_R's); sex and birth from IR_BEN_R, else from the patient's DCIR
    # lines, else unknown (empty); birth month from IR_BEN_R only (docs/data-dictionary.md, patients)
    if "IR_BEN_R" in sources:
        who = np.arange(p.n)
    else:
        who = np.unique(np.concatenate([pid, s_pid, rp, p.ald_pid[ald]]).astype(np.int64))
    in_ben = np.full(len(who), "IR_BEN_R" in sources)
    in_dcir = np.zeros(p.n, bool)
    in_dcir[pid] = True
    known = in_ben | in_dcir[who]
    by, bm, _ = ymd(p.birth[who])
    last = np.full(p.n, np.iinfo(np.int64).min)
    np.maximum.at(last, pid, dtd)
    np.maximum.at(last, s_pid, s_end)
    last = np.where(last == np.iinfo(np.int64).min, NULL_DAY, last)[who]
    if set(dsrc) == set(DEATH_SOURCES):
        death, incoherent = p.death_reported()[who], p.incoherent[who]
    else:  # Victoria's rule over the sources delivered
        stack = np.stack([p.death_src[s] for s in dsrc]) if dsrc else np.full((1, p.n), NULL_DAY)
        has = stack != NULL_DAY
        hi = np.where(has, stack, np.iinfo(np.int64).min).max(axis=0)
        lo = np.where(has, stack, np.iinfo(np.int64).max).min(axis=0)
        anyd = has.any(axis=0)
        death = np.where(anyd, hi, NULL_DAY)[who]
        incoherent = (anyd & (hi - lo >= 7))[who]
    ev["patients"] = _table("patients", {
        "patient_id": s_take(psa, who), "sex": s_int(p.sex[who], null=~known), "birth_year": s_int(by, null=~known),
        "birth_month": s_int(bm, null=~in_ben), "death_date": _iso(death),
        "incoherent_death": s_int(incoherent.astype(np.int64)), "last_contact_date": _iso(last),
    }, {"patient_id": psa_rank[who]})

    # ------------------------------------------------------------------ diagnoses (PMSI world stays + ALD)
    parts = []  # (pid, icd, source, type, date, end, year)
    stype = {"MCO": ("DP", "DR", "DAS"), "SSR": ("MP", "AE", "DAS"), "HAD": ("DP", None, "DAS")}
    for s_i, s in enumerate(P.SOURCES):
        if s not in stype:
            continue  # RIP diagnoses are not events
        m = ws[st["src"][ws] == s_i]
        t_dp, t_second, _ = stype[s]
        parts.append((st["pid"][m], st["dp"][m], s, t_dp, st["start"][m], st["year"][m]))
        if s == "MCO":
            mm = m[st["dr"][m] >= 0]
            parts.append((st["pid"][mm], st["dr"][mm], s, "DR", st["start"][mm], st["year"][mm]))
        if s == "SSR":
            parts.append((st["pid"][m], st["etl"][m], s, "AE", st["start"][m], st["year"][m]))
        dm = np.isin(pm.das["stay"], m)
        ds = pm.das["stay"][dm]
        parts.append((st["pid"][ds], pm.das["icd"][dm], s, "DAS", st["start"][ds], st["year"][ds]))
    dg_pid = np.concatenate([x[0] for x in parts] + [p.ald_pid[ald]])
    dg_icd = np.concatenate([x[1] for x in parts] + [p.ald_icd[ald]])
    dg_src = np.concatenate([np.full(len(x[0]), x[2]) for x in parts] + [np.full(len(ald), "ALD")]).astype(str)
    dg_typ = np.concatenate([np.full(len(x[0]), x[3]) for x in parts] + [np.full(len(ald), "ALD")]).astype(str)
    dg_date = np.concatenate([x[4] for x in parts] + [p.ald_start[ald]])
    dg_end = np.concatenate([np.full(len(x[0]), NULL_DAY) for x in parts] + [p.ald_end[ald]])
    dg_year = np.concatenate([x[5] for x in parts] + [ymd(p.ald_start[ald])[0]])
    ev["diagnoses"] = _table("diagnoses", {
        "patient_id": s_take(psa, dg_pid), "code": s_take(codes.icd, dg_icd), "source": pa.array(dg_src),
        "diagnosis_type": pa.array(dg_typ), "date": _iso(dg_date), "end_date": _iso(dg_end), "year": s_int(dg_year),
    }, {"patient_id": psa_rank[dg_pid], "date": dg_date, "source": _rank(dg_src), "diagnosis_type": _rank(dg_typ),
        "code": _rank(codes.icd[dg_icd]), "end_date": dg_end})

    # ------------------------------------------------------------------ procedures
    cam = d.det["CAM"]
    cw = np.isin(cam["line"], w) & (cam["role"] == 0)
    cl = cam["line"][cw]
    am = np.isin(pm.acts["stay"], ws)
    a_stay = pm.acts["stay"][am]
    pr_pid = np.concatenate([L["pid"][cl], st["pid"][a_stay]])
    pr_code = np.concatenate([cam["code"][cw], pm.acts["ccam"][am]])
    pr_date = np.concatenate([L["dtd"][cl], st["start"][a_stay] + pm.acts["delay"][am]])
    pr_src = np.concatenate([np.full(len(cl), "DCIR"), np.array(P.SOURCES)[st["src"][a_stay]]]).astype(str)
    ev["procedures"] = _table("procedures", {
        "patient_id": s_take(psa, pr_pid), "code": s_take(codes.ccam, pr_code), "date": _iso(pr_date), "source": pa.array(pr_src),
    }, {"patient_id": psa_rank[pr_pid], "date": pr_date, "source": _rank(pr_src), "code": pr_code})

    # ------------------------------------------------------------------ consults
    c = w[L["cat"][w] == D.CAT_CONSULT]
    ev["consults"] = _table("consults", {
        "patient_id": s_take(psa, L["pid"][c]), "date": _iso(L["dtd"][c]), "PRS_NAT_REF": s_int(L["nat"][c]),
        "PSE_SPE_COD": s_int(prov.spe[L["prov"][c]]),
    }, {"patient_id": psa_rank[L["pid"][c]], "date": L["dtd"][c], "PRS_NAT_REF": L["nat"][c], "PSE_SPE_COD": prov.spe[L["prov"][c]]})

    # ------------------------------------------------------------------ biology, devices, drugs
    def det_rows(name):
        t = d.det[name]
        m = np.isin(t["line"], w) & (t["role"] == 0)
        return t.take(np.flatnonzero(m))

    for name, ev_name, code_arr in (("BIO", "biology", codes.bio), ("TIP", "devices", codes.lpp)):
        t = det_rows(name)
        lp = t["line"]
        ev[ev_name] = _table(ev_name, {
            "patient_id": s_take(psa, L["pid"][lp]), "date": _iso(L["dtd"][lp]), "code": s_int(code_arr[t["code"]]),
            "quantity": s_int(t["qty_n"]),
        }, {"patient_id": psa_rank[L["pid"][lp]], "date": L["dtd"][lp], "code": code_arr[t["code"]], "quantity": t["qty_n"]})
    t = det_rows("PHA")
    if not {"IR_PHA_R", "REF"} <= set(sources):  # the ATC code and the DDD come from the referentials
        t = t.take(_NONE)
    lp = t["line"]
    ddd = t["qty_n"] * drugs.ddd_per_box_x1000[t["code"]]
    ev["drug_dispensations"] = _table("drug_dispensations", {
        "patient_id": s_take(psa, L["pid"][lp]), "date": _iso(L["dtd"][lp]), "cip13": s_int(drugs.cip13[t["code"]]),
        "atc": s_take(drugs.atc, t["code"]), "quantity": s_int(t["qty_n"]), "ddd": s_fixed(ddd, 3),
    }, {"patient_id": psa_rank[L["pid"][lp]], "date": L["dtd"][lp], "cip13": drugs.cip13[t["code"]], "quantity": t["qty_n"]})

    # ------------------------------------------------------------------ stays
    ident = st["ident"][ws]
    stay_id = _stay_ids(st, ws)
    ghm = _group_codes(st, ws, codes)
    src_names = np.array(P.SOURCES)
    fin_rank = np.argsort(np.argsort(codes.finess.astype(str)))
    ev["stays"] = _table("stays", {
        "patient_id": s_take(psa, s_pid), "source": s_take(src_names, s_src), "eta_num": s_take(codes.finess, st["eta"][ws]),
        "stay_id": stay_id, "start_date": _iso(s_start), "end_date": _iso(s_end),
        "ENT_MOD": pa.array(st["ent_mod"][ws].astype(str)), "SOR_MOD": pa.array(st["sor_mod"][ws].astype(str)), "ghm": ghm,
    }, {"patient_id": psa_rank[s_pid], "start_date": s_start, "source": np.argsort(np.argsort(src_names))[s_src],
        "eta_num": fin_rank[st["eta"][ws]], "stay_id": ident})

    # ------------------------------------------------------------------ CMU-C
    cm = w[L["cmu_top"][w] == 1]
    yr = ymd(L["dtd"][cm])[0]
    key = L["pid"][cm] * 10000 + yr
    _, first = np.unique(key, return_index=True)
    cp, cy = L["pid"][cm][first], yr[first]
    ev["cmuc"] = _table("cmuc", {"patient_id": s_take(psa, cp), "year": s_int(cy)}, {"patient_id": psa_rank[cp], "year": cy})

    # ------------------------------------------------------------------ costs (medico-economic model)
    exclusions = _costs(ev, p, codes, d, pm, ace, w, ws, psa, psa_rank, fin_rank, sources)
    return {name: ev[name] for name in EVENT_COLUMNS}, exclusions


def _costs(ev, p, codes, d, pm, ace, w, ws, psa, psa_rank, fin_rank, sources) -> dict:
    L, st, v = d.lines, pm.stays, ace.visits
    # kept DCIR lines attributed to a kept private clinic stay (the stay's own clinic line): none without
    # both DCIR and PMSI (a DCIR-only delivery has no stay to match, a PMSI-only one no claim)
    priv = ws[(st["src"][ws] == P.MCO) & (st["dcir_line"][ws] >= 0)]
    if "DCIR" not in sources:
        priv = priv[:0]
    attributed = np.zeros(L.n, bool)
    attributed[st["dcir_line"][priv]] = True
    if np.any(L["role"][st["dcir_line"][priv]] != D.ROLE_WORLD):
        raise AssertionError("a private clinic stay's DCIR line is not a kept line")
    net = lambda a, rows: L[a + "_n"][rows].astype(np.int64)  # noqa: E731

    # ---------------------------------------------------------------- outpatient: kept lines not attributed
    o = w[~attributed[w]]
    nat = L["nat"][o].astype(np.int64)
    unat, inv = np.unique(nat, return_inverse=True)
    cat_of = np.array([OUTPATIENT_CATEGORIES.index(codes.prs_nat_category.get(int(x), "other")) for x in unat], np.int64)
    cat = cat_of[inv.ravel()] if len(o) else np.zeros(0, np.int64)
    cat_names = np.array(OUTPATIENT_CATEGORIES)
    o_pid, o_dtd, o_dtf = L["pid"][o], L["dtd"][o].astype(np.int64), L["dtf"][o].astype(np.int64)
    paid, base, reimb = net("paid", o), net("base", o), net("reimb", o) + net("cpl", o)
    ev["costs_outpatient"] = _table("costs_outpatient", {
        "patient_id": s_take(psa, o_pid), "date": _iso(o_dtd), "end_date": _iso(o_dtf), "PRS_NAT_REF": s_int(nat),
        "category": s_take(cat_names, cat), "paid": s_cents(paid), "base": s_cents(base), "reimbursed": s_cents(reimb),
    }, {"patient_id": psa_rank[o_pid], "date": o_dtd, "PRS_NAT_REF": nat, "end_date": o_dtf,
        "category": np.argsort(np.argsort(cat_names))[cat], "paid": paid, "base": base, "reimbursed": reimb})

    # ---------------------------------------------------------------- hospital episodes
    s_src, year = st["src"], st["year"]
    pub = ws[(s_src[ws] == P.MCO) & (st["valo"][ws] == P.VALO_VALUED) & (st["ent_mod"][ws] != "0")
             & (st["sor_mod"][ws] != "0") & ((year[ws] < 2015) | (st["typ_gen"][ws] == 0))]
    billed = ws[np.isin(s_src[ws], [P.SSR, P.HAD, P.RIP]) & (st["fac"][ws] == 1)]
    kept_v = (v["role"] == P.ROLE_WORLD) & ("PMSI" in sources)
    vis = np.flatnonzero(kept_v & (v["valo"] == A.VALO_VALUED))
    sidx = np.concatenate([pub, priv, billed])
    nh_s, nv = len(sidx), len(vis)
    # source index into HOSPITAL_SOURCES (MCO, ACE, SSR, HAD, RIP)
    pmsi_to_h = np.array([0, 2, 3, 4])
    h_src = np.concatenate([pmsi_to_h[s_src[sidx]], np.ones(nv, np.int64)])
    h_pid = np.concatenate([st["pid"][sidx], v["pid"][vis]])
    h_eta = np.concatenate([st["eta"][sidx], v["eta"][vis]])
    h_start = np.concatenate([st["start"][sidx], v["date"][vis]])
    h_end = np.concatenate([st["end"][sidx], v["date"][vis]])
    h_ident = np.concatenate([st["ident"][sidx], v["seq"][vis]])
    h_val = np.concatenate([np.zeros(len(pub), np.int64), np.ones(len(priv), np.int64), np.zeros(len(billed) + nv, np.int64)])
    line = st["dcir_line"][priv]
    h_base = np.concatenate([np.zeros(len(pub), np.int64), net("base", line), st["stc_base"][billed], v["mnt_br"][vis]])
    h_reimb = np.concatenate([st["mnt_tot"][pub], net("reimb", line) + net("cpl", line), st["stc_tot"][billed],
                              v["mnt_remb"][vis]])
    h_base_null = np.concatenate([np.ones(len(pub), bool), np.zeros(len(priv) + len(billed) + nv, bool)])
    h_sid = pa.concat_arrays([_stay_ids(st, sidx), s_zero_pad(v["seq"][vis], 9)]) if (nh_s + nv) else pa.array([], pa.string())
    hs_names = np.array(HOSPITAL_SOURCES)
    ev["costs_hospital_stays"] = _table("costs_hospital_stays", {
        "patient_id": s_take(psa, h_pid), "source": s_take(hs_names, h_src), "eta_num": s_take(codes.finess, h_eta),
        "stay_id": h_sid, "start_date": _iso(h_start), "end_date": _iso(h_end),
        "valuation": s_take(np.array(["PMSI", "DCIR"]), h_val), "base": s_cents(h_base, null=h_base_null),
        "reimbursed": s_cents(h_reimb),
    }, {"patient_id": psa_rank[h_pid], "start_date": h_start, "source": np.argsort(np.argsort(hs_names))[h_src],
        "eta_num": fin_rank[h_eta], "stay_id": h_ident})

    # ---------------------------------------------------------------- extras of the valued public MCO stays
    med = pm.med.take(np.flatnonzero(np.isin(pm.med["stay"], pub)))
    dmi = pm.dmip.take(np.flatnonzero(np.isin(pm.dmip["stay"], pub)))
    x_stay = np.concatenate([med["stay"], dmi["stay"]]).astype(np.int64)
    x_kind = np.concatenate([np.full(med.n, "drug"), np.full(dmi.n, "device")]).astype(str)
    x_date = st["start"][x_stay] + np.concatenate([med["delay"], dmi["delay"]])
    x_code = np.concatenate([codes.ucd[med["ucd"]].astype(str), codes.lpp[dmi["lpp"]].astype(str)]).astype(str)
    x_qty = np.concatenate([med["nbr"], dmi["nbr"] * 1000]).astype(np.int64)  # x1000 (3 decimals)
    x_amt = np.concatenate([med["price"] * med["nbr"] // 1000, dmi["nbr"] * dmi["price"]]).astype(np.int64)
    x_pid = st["pid"][x_stay]
    ev["costs_hospital_extras"] = _table("costs_hospital_extras", {
        "patient_id": s_take(psa, x_pid), "source": s_const("MCO", len(x_stay)), "eta_num": s_take(codes.finess, st["eta"][x_stay]),
        "stay_id": _stay_ids(st, x_stay), "date": _iso(x_date), "kind": pa.array(x_kind, pa.string()),
        "code": pa.array(x_code, pa.string()), "quantity": s_fixed(x_qty, 3), "amount": s_cents(x_amt),
    }, {"patient_id": psa_rank[x_pid], "date": x_date, "kind": _rank(x_kind), "code": _rank(x_code),
        "source": np.zeros(len(x_stay), np.int64), "eta_num": fin_rank[st["eta"][x_stay]], "stay_id": st["ident"][x_stay],
        "quantity": x_qty, "amount": x_amt})

    # ---------------------------------------------------------------- per patient and year
    ncol = len(PATIENT_YEAR_COLUMNS)
    py_pid = np.concatenate([o_pid, h_pid, x_pid]).astype(np.int64)
    py_year = np.concatenate([ymd(o_dtd)[0], ymd(h_end)[0], ymd(x_date)[0]]).astype(np.int64)
    py_col = np.concatenate([cat, len(OUTPATIENT_CATEGORIES) + h_src, np.full(len(x_pid), ncol - 1)]).astype(np.int64)
    py_amt = np.concatenate([reimb, h_reimb, x_amt]).astype(np.int64)
    if len(py_pid):
        y0 = int(py_year.min())
        key = py_pid * 1000 + (py_year - y0)
        uk, kinv = np.unique(key, return_inverse=True)
        kinv = kinv.ravel()
        # amounts are int64 cents; two float64 bincounts (high and low parts) keep the sums exact
        hi, lo = py_amt // 2**24, py_amt % 2**24
        flat = kinv * ncol + py_col
        mat = (np.bincount(flat, weights=hi, minlength=len(uk) * ncol).round().astype(np.int64) * 2**24
               + np.bincount(flat, weights=lo, minlength=len(uk) * ncol).round().astype(np.int64)).reshape(len(uk), ncol)
        u_pid, u_year = uk // 1000, uk % 1000 + y0
    else:
        mat = np.zeros((0, ncol), np.int64)
        u_pid = u_year = np.zeros(0, np.int64)
    cols = {"patient_id": s_take(psa, u_pid), "year": s_int(u_year), "total": s_cents(mat.sum(axis=1))}
    for j, c in enumerate(PATIENT_YEAR_COLUMNS):
        cols[c] = s_cents(mat[:, j])
    ev["costs_patient_year"] = _table("costs_patient_year", cols, {"patient_id": psa_rank[u_pid], "year": u_year})

    mco_pub_kept = ws[(s_src[ws] == P.MCO) & (st["valo"][ws] != P.VALO_NONE)]
    return {
        "mco_not_valued": int(np.sum(np.isin(st["valo"][mco_pub_kept], [P.VALO_ZERO, P.VALO_EMPTY]))),
        "mco_inter_establishment": int(np.sum((st["ent_mod"][mco_pub_kept] == "0") | (st["sor_mod"][mco_pub_kept] == "0"))),
        "mco_typ_gen_rsa": int(np.sum((st["typ_gen"][mco_pub_kept] == 1) & (year[mco_pub_kept] >= 2015))),
        "ace_not_valued": int(np.sum(kept_v & (v["valo"] != A.VALO_VALUED))),
        "ssr_not_billable": int(np.sum((s_src[ws] == P.SSR) & (st["fac"][ws] == 0))),
        "had_not_billable": int(np.sum((s_src[ws] == P.HAD) & (st["fac"][ws] == 0))),
        "rip_not_billable": int(np.sum((s_src[ws] == P.RIP) & (st["fac"][ws] == 0))),
        "dcir_lines_attributed_to_stays": int(len(priv)),
    }


def _rank(values: np.ndarray) -> np.ndarray:
    """Integer sort key of string values (lexicographic)."""
    if len(values) == 0:
        return np.zeros(0, np.int64)
    _, inv = np.unique(values.astype(str), return_inverse=True)
    return inv


def _stay_ids(st, idx) -> pa.Array:
    """Stay numbers zero-padded as in the files: RSA_NUM 10, RHA_NUM 7, RHAD_NUM 5, RIP_NUM 7 characters."""
    if len(idx) == 0:
        return pa.array([], pa.string())
    ident, width = st["ident"][idx], np.array(P.ID_WIDTH)[st["src"][idx]]
    r5, r7, r10 = (s_zero_pad(ident, k) for k in (5, 7, 10))
    return pc.if_else(pa.array(width == 10), r10, pc.if_else(pa.array(width == 7), r7, r5))


def _group_codes(st, ws, codes: Codes) -> pa.Array:
    src = st["src"][ws]
    mco = codes.ghm[np.maximum(st["ghm"][ws], 0)]
    ssr = P.gme_code(st["gme"][ws])
    had = P.ghpc_code(st["ghpc"][ws])
    out = pa.array(np.where(src == P.MCO, mco, np.where(src == P.SSR, ssr, had)).astype(str))
    return pc.if_else(pa.array(src == P.RIP), pa.nulls(len(out), pa.string()), out)  # RIP: no group
