"""Expected events of the epidemiological model, derived from the world (not from the files).

Only world rows count: DCIR lines of role 0 (partial régularisations with their net quantity and
amounts) and PMSI stays of role 0. See docs/synthetic-data.md for the exact definitions.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import dcir as D
from . import pmsi as P
from .codes import Codes
from .drugs import Drugs
from .fmt import NULL_DAY, s_cents, s_date, s_fixed, s_int, s_take, s_zero_pad, ymd
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
    "costs_dcir": ["patient_id", "date", "category", "paid", "base", "reimbursed"],
}
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
    "costs_dcir": ["patient_id", "date", "category"],
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


def build_events(p: Patients, prov: Providers, drugs: Drugs, codes: Codes, d: D.Dcir, pm: P.Pmsi) -> dict:
    ev = {}
    L = d.lines
    w = np.flatnonzero(L["role"] == D.ROLE_WORLD)
    pid, dtd = L["pid"][w], L["dtd"][w]
    psa = p.psa
    psa_rank = np.argsort(np.argsort(psa))  # patient_id order for sorting

    st = pm.stays
    ws = np.flatnonzero(st["role"] == P.ROLE_WORLD)
    s_pid, s_start, s_end, s_src = st["pid"][ws], st["start"][ws], st["end"][ws], st["src"][ws]

    # ------------------------------------------------------------------ patients
    by, bm, _ = ymd(p.birth)
    last = np.full(p.n, np.iinfo(np.int64).min)
    np.maximum.at(last, pid, dtd)
    np.maximum.at(last, s_pid, s_end)
    last = np.where(last == np.iinfo(np.int64).min, NULL_DAY, last)
    death = p.death_reported()
    ev["patients"] = _table("patients", {
        "patient_id": pa.array(psa.astype(str)), "sex": s_int(p.sex), "birth_year": s_int(by), "birth_month": s_int(bm),
        "death_date": _iso(death), "incoherent_death": s_int(p.incoherent.astype(np.int64)), "last_contact_date": _iso(last),
    }, {"patient_id": psa_rank})

    # ------------------------------------------------------------------ deaths by source
    rows_pid, rows_src, rows_date = [], [], []
    for j, s in enumerate(DEATH_SOURCES):
        m = np.flatnonzero(p.death_src[s] != NULL_DAY)
        rows_pid.append(m)
        rows_src.append(np.full(len(m), j))
        rows_date.append(p.death_src[s][m])
    rp, rs, rd = np.concatenate(rows_pid), np.concatenate(rows_src), np.concatenate(rows_date)
    srcnames = np.array(DEATH_SOURCES)
    ev["deaths_by_source"] = _table("deaths_by_source", {
        "patient_id": s_take(psa, rp), "source": s_take(srcnames, rs), "death_date": _iso(rd),
    }, {"patient_id": psa_rank[rp], "source": np.argsort(np.argsort(srcnames))[rs]})

    # ------------------------------------------------------------------ diagnoses (PMSI world stays + ALD)
    parts = []  # (pid, icd, source, type, date, end, year)
    stype = {"MCO": ("DP", "DR", "DAS"), "SSR": ("MP", "AE", "DAS"), "HAD": ("DP", None, "DAS")}
    for s_i, s in enumerate(P.SOURCES):
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
    dg_pid = np.concatenate([x[0] for x in parts] + [p.ald_pid])
    dg_icd = np.concatenate([x[1] for x in parts] + [p.ald_icd])
    dg_src = np.concatenate([np.full(len(x[0]), x[2]) for x in parts] + [np.full(len(p.ald_pid), "ALD")]).astype(str)
    dg_typ = np.concatenate([np.full(len(x[0]), x[3]) for x in parts] + [np.full(len(p.ald_pid), "ALD")]).astype(str)
    dg_date = np.concatenate([x[4] for x in parts] + [p.ald_start])
    dg_end = np.concatenate([np.full(len(x[0]), NULL_DAY) for x in parts] + [p.ald_end])
    dg_year = np.concatenate([x[5] for x in parts] + [ymd(p.ald_start)[0]])
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
    lp = t["line"]
    ddd = t["qty_n"] * drugs.ddd_per_box_x1000[t["code"]]
    ev["drug_dispensations"] = _table("drug_dispensations", {
        "patient_id": s_take(psa, L["pid"][lp]), "date": _iso(L["dtd"][lp]), "cip13": s_int(drugs.cip13[t["code"]]),
        "atc": s_take(drugs.atc, t["code"]), "quantity": s_int(t["qty_n"]), "ddd": s_fixed(ddd, 3),
    }, {"patient_id": psa_rank[L["pid"][lp]], "date": L["dtd"][lp], "cip13": drugs.cip13[t["code"]], "quantity": t["qty_n"]})

    # ------------------------------------------------------------------ stays
    width = np.array([10, 7, 5])[s_src]
    ident = st["ident"][ws]
    stay_id = _zpad_mixed(ident, width)
    ghm = _group_codes(st, ws, codes)
    ev["stays"] = _table("stays", {
        "patient_id": s_take(psa, s_pid), "source": s_take(np.array(P.SOURCES), s_src), "eta_num": s_take(codes.finess, st["eta"][ws]),
        "stay_id": stay_id, "start_date": _iso(s_start), "end_date": _iso(s_end),
        "ENT_MOD": pa.array(st["ent_mod"][ws].astype(str)), "SOR_MOD": pa.array(st["sor_mod"][ws].astype(str)), "ghm": ghm,
    }, {"patient_id": psa_rank[s_pid], "start_date": s_start, "source": s_src, "eta_num": st["eta"][ws], "stay_id": ident})

    # ------------------------------------------------------------------ CMU-C
    cm = w[L["cmu_top"][w] == 1]
    yr = ymd(L["dtd"][cm])[0]
    key = L["pid"][cm] * 10000 + yr
    _, first = np.unique(key, return_index=True)
    cp, cy = L["pid"][cm][first], yr[first]
    ev["cmuc"] = _table("cmuc", {"patient_id": s_take(psa, cp), "year": s_int(cy)}, {"patient_id": psa_rank[cp], "year": cy})

    # ------------------------------------------------------------------ DCIR costs, per (patient, date, category)
    cat_names = np.array(["consult", "drug", "biology", "device", "procedure", "other"])
    unique_nat, inv = np.unique(L["nat"][w], return_inverse=True)
    cat_of_nat = np.array([list(cat_names).index(codes.prs_nat_category.get(int(x), "other")) for x in unique_nat], dtype=np.int64)
    cat = cat_of_nat[inv] if len(w) else np.zeros(0, np.int64)
    gkey = (psa_rank[pid].astype(np.int64) * 100000 + (dtd - dtd.min() if len(dtd) else dtd)) * 10 + cat
    uk, ginv = np.unique(gkey, return_inverse=True)
    g = len(uk)
    sums = {a: np.bincount(ginv, weights=L[a + "_n"][w], minlength=g).round().astype(np.int64) for a in ("paid", "base", "reimb", "cpl")}
    first = np.full(g, len(w))
    np.minimum.at(first, ginv, np.arange(len(w)))
    gp, gd, gc = pid[first], dtd[first], cat[first]
    ev["costs_dcir"] = _table("costs_dcir", {
        "patient_id": s_take(psa, gp), "date": _iso(gd), "category": s_take(cat_names, gc), "paid": s_cents(sums["paid"]),
        "base": s_cents(sums["base"]), "reimbursed": s_cents(sums["reimb"] + sums["cpl"]),
    }, {"patient_id": psa_rank[gp], "date": gd, "category": _rank(cat_names[gc])})
    return ev


def _rank(values: np.ndarray) -> np.ndarray:
    """Integer sort key of string values (lexicographic)."""
    if len(values) == 0:
        return np.zeros(0, np.int64)
    _, inv = np.unique(values.astype(str), return_inverse=True)
    return inv


def _zpad_mixed(ident, width) -> pa.Array:
    """Stay numbers zero-padded as in the files: RSA_NUM 10, RHA_NUM 7, RHAD_NUM 5 characters."""
    if len(ident) == 0:
        return pa.array([], pa.string())
    r5, r7, r10 = (s_zero_pad(ident, k) for k in (5, 7, 10))
    return pc.if_else(pa.array(width == 10), r10, pc.if_else(pa.array(width == 7), r7, r5))


def _group_codes(st, ws, codes: Codes) -> pa.Array:
    src = st["src"][ws]
    mco = codes.ghm[np.maximum(st["ghm"][ws], 0)]
    ssr = P.gme_code(st["gme"][ws])
    had = P.ghpc_code(st["ghpc"][ws])
    return pa.array(np.where(src == 0, mco, np.where(src == 1, ssr, had)).astype(str))
