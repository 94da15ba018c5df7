"""Rendering the world into delivery files: each function returns {file name: FileData}."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import ace as A
from . import dcir as D
from . import pmsi as P
from .codes import Codes, read_ref
from .drugs import Drugs
from .fmt import (NULL_DAY, PLACEHOLDER_DEATH, add_months, month_start, s_cents, s_const, s_fixed, s_int, s_null_empty,
                  s_take, s_zero_pad)
from .table import group_ids, rank_in_group
from .world import PLACEHOLDER_NIRS, Patients, Period, Providers, age_months, age_years, random_ids
from .variants import GHS_LETTER_CODES, MISSING_CHAINING_CODES
from .writer import Formatter, Lazy, Profile


class _Sorted:
    """Columns of a Cols seen through a row order; a column is gathered once, when first used."""

    def __init__(self, cols, order):
        self.cols, self.order, self.cache = cols, order, {}

    def __getitem__(self, k):
        if k not in self.cache:
            self.cache[k] = self.cols[k][self.order]
        return self.cache[k]


@dataclass
class FileData:
    table: str
    year: int | None
    data: dict
    corrupt: list


def _dpt2(codes: Codes, dpt_idx):
    d = codes.dpt[dpt_idx]
    return np.where(d == "201", "2A", np.where(d == "202", "2B", np.char.lstrip(d.astype(str), "0").astype("U3")))


def dotted(rng, codes: Codes, icd_idx, counter: dict, table: str, share=0.08, null=None):
    """ICD-10 codes (pa strings); a share of the codes of 4+ characters is written with a dot after the
    3-character category (`C669` -> `C66.9`), counted per table in `counter`."""
    icd_idx = np.asarray(icd_idx, dtype=np.int64)
    null = np.zeros(len(icd_idx), bool) if null is None else np.asarray(null, dtype=bool)
    plain = s_take(codes.icd, np.where(null, 0, icd_idx))
    long_ = np.char.str_len(codes.icd)[np.where(null, 0, icd_idx)] >= 4
    dot = (~null) & long_ & (rng.random(len(icd_idx)) < share)
    with_dot = pc.binary_join_element_wise(pc.utf8_slice_codeunits(plain, 0, 3), pc.utf8_slice_codeunits(plain, 3, 10), ".")
    out = pc.if_else(pa.array(dot), with_dot, plain)
    if null.any():
        out = pc.if_else(pa.array(null), pa.nulls(len(out), pa.string()), out)
    counter[table] = counter.get(table, 0) + int(dot.sum())
    return out


# ======================================================================================= DCIR
def render_dcir(rng, d: D.Dcir, p: Patients, prov: Providers, drugs: Drugs, codes: Codes, period: Period,
                profile: Profile) -> tuple[dict, dict]:
    """ER_PRS_F and its detail tables, ordered by flux (FLX_DIS_DTD, DCT_ORD_NUM, PRS_ORD_NUM). Values are
    formatted lazily, chunk by chunk, when the writer asks for them."""
    L = d.lines
    N = L.n
    dct_dense, n_dct = group_ids(L["dct"])
    T = L["T"]
    flx = add_months(month_start(T), 1)
    dct_num = (rng.permutation(n_dct) * 3 + 100_001 + rng.integers(0, 3, n_dct))[dct_dense]
    emt_ord = rng.integers(1, 40, n_dct)[dct_dense]
    prs_ord = rank_in_group(dct_dense) + 1
    order = np.lexsort((prs_ord, dct_num, flx))
    pos = np.empty(N, dtype=np.int64)
    pos[order] = np.arange(N)
    # rows are addressed through `order` (no sorted copy of the whole line table)
    L0 = L
    L = _Sorted(L0, order)
    T, flx, dct_num, emt_ord, prs_ord = T[order], flx[order], dct_num[order], emt_ord[order], prs_ord[order]
    pid = L["pid"]
    dtd, dtf = L["dtd"], L["dtf"]
    files = {}
    F = Formatter(profile, "ER_PRS_F")
    org = pa.array(p.org.astype(str))
    psa = pa.array(p.psa.astype(str))
    dpt3 = pa.array(codes.dpt.astype(str))
    cdi = pa.array(p.cdi_nir.astype(str))
    finess = pa.array(codes.finess.astype(str))
    pnum = pa.array(prov.num.astype(str))

    def keys(rows: np.ndarray) -> dict:
        """The 9 join keys of ER_PRS_F rows `rows` (positions in the sorted order)."""
        k = len(rows)
        return {
            "DCT_ORD_NUM": s_int(dct_num[rows]),
            "FLX_DIS_DTD": F.date("FLX_DIS_DTD", flx[rows]),
            "FLX_EMT_NUM": s_int(100 + p.dpt[pid[rows]]),
            "FLX_EMT_ORD": s_int(emt_ord[rows]),
            "FLX_EMT_TYP": s_const("1", k),
            "FLX_TRT_DTD": F.date("FLX_TRT_DTD", T[rows]),
            "ORG_CLE_NUM": s_take(org, pid[rows]),
            "PRS_ORD_NUM": s_int(prs_ord[rows]),
            "REM_TYP_AFF": s_const("1", k),
        }

    def make_prs(a: int, b: int) -> dict:
        r = np.arange(a, b)
        pi = pid[r]
        dd, df, t = dtd[r], dtf[r], T[r]
        birth = p.birth[pi]
        age = age_years(birth, dd)
        ama = np.where(age < 2, 1000 + age_months(birth, dd), age)
        death = p.death[pi]
        dsrc = p.death_src["DCIR"][pi]
        show = (dsrc != NULL_DAY) & (death != NULL_DAY) & (t >= death)
        dcd = np.where(show, dsrc, PLACEHOLDER_DEATH)
        prov_i = L["prov"][r]
        has_prov = prov_i >= 0
        pv = np.maximum(prov_i, 0)
        doctor = has_prov & np.isin(prov.kind[pv], ["GP", "SPE"])
        presc, etab = L["presc"][r], L["etab"][r]
        qty, reimb, paid, base = L["qty"][r], L["reimb"][r], L["paid"][r], L["base"][r]
        dpnq = L["dpnq"][r]
        return {
            "BEN_AMA_COD": s_int(ama),
            "BEN_CDI_NIR": s_take(cdi, pi),
            "BEN_CMU_TOP": s_int(L["cmu_top"][r]),
            "BEN_DCD_AME": F.date("BEN_DCD_AME", dcd),
            "BEN_DCD_DTE": F.date("BEN_DCD_DTE", dcd),
            "BEN_NAI_ANN": F.date("BEN_NAI_ANN", birth),
            "BEN_NIR_PSA": s_take(psa, pi),
            "BEN_RNG_GEM": s_const("1", len(r)),
            "BEN_RES_DPT": s_take(dpt3, p.dpt[pi]),
            "BEN_SEX_COD": s_int(p.sex[pi]),
            "ORG_AFF_BEN": s_take(org, pi),
            "EXE_SOI_AMD": F.date("EXE_SOI_AMD", dd),
            "EXE_SOI_AMF": F.date("EXE_SOI_AMF", df),
            "EXE_SOI_DTD": F.date("EXE_SOI_DTD", dd),
            "EXE_SOI_DTF": F.date("EXE_SOI_DTF", df),
            "BSE_REM_BSE": s_cents(base),
            "BSE_REM_MNT": s_cents(reimb),
            "BSE_REM_SGN": s_int(np.where((qty < 0) | (reimb < 0), -1, 1)),
            "CPL_REM_MNT": s_cents(L["cpl"][r]),
            "PRS_ACT_CFT": s_fixed(L["coef"][r], 2),
            "PRS_ACT_NBR": s_int(qty),
            "PRS_ACT_QTE": s_int(qty),
            "PRS_DEP_MNT": s_cents(paid - base),
            "PRS_PAI_MNT": s_cents(paid),
            "BSE_PRS_NAT": s_int(L["bse_nat"][r]),
            "CPL_AFF_COD": s_int(L["aff"][r]),
            "CPL_MAJ_TOP": s_int(L["maj"][r]),
            "DPN_QLF": s_int(L["dpn"][r]),
            "EXO_MTF": s_int(L["exo"][r]),
            "PRS_DPN_QLP": s_int(dpnq, null=dpnq < 0),
            "PRS_NAT_REF": s_int(L["nat"][r]),
            "RGO_REM_TAU": s_int(L["rate"][r]),
            "ETB_PRE_FIN": s_take(finess, np.maximum(etab, 0), null=etab < 0),
            "PFS_EXE_NUM": s_take(pnum, pv, null=~has_prov),
            "PFS_PRE_NUM": s_take(pnum, np.maximum(presc, 0), null=presc < 0),
            "PSE_ACT_NAT": s_int(prov.act[pv], null=~has_prov),
            "PSE_SPE_COD": s_int(prov.spe[pv], null=~doctor),
            "PRS_PPU_SEC": s_int(L["ppu"][r]),
            **keys(r),
        }

    bad = np.flatnonzero(L["reason"] >= 0)
    corrupt = [(int(i), D.REASONS[r]) for i, r in zip(bad, L["reason"][bad])]
    files["ER_PRS_F.csv"] = FileData("ER_PRS_F", None, Lazy(N, make_prs), corrupt)

    # detail tables: keys of their line, ordered like ER_PRS_F
    def detail(name: str, table: str, cols_fn):
        dt = d.det[name]
        lp = pos[dt["line"]]
        ordn = rank_in_group(dt["line"]) + 1
        o = np.lexsort((ordn, lp))
        dt = dt.take(o)
        lp, ordn = lp[o], ordn[o]
        Fd = Formatter(profile, table)

        def make(a, b):
            t = dt.take(np.arange(a, b))
            return {**cols_fn(t, lp[a:b], ordn[a:b], Fd), **keys(lp[a:b])}

        bad = np.flatnonzero(dt["reason"] >= 0)
        cor = [(int(i), D.REASONS[r]) for i, r in zip(bad, dt["reason"][bad])]
        files[f"{table}.csv"] = FileData(table, None, Lazy(dt.n, make), cor)

    ccam = pa.array(codes.ccam.astype(str))
    ucd = pa.array(codes.ucd.astype(str))
    detail("PHA", "ER_PHA_F", lambda t, lp, o, Fd: {
        "PHA_ACT_PRU": s_cents(t["price"]),
        "PHA_ACT_QSN": s_int(t["qty"]),
        "PHA_ORD_NUM": s_int(o),
        "PHA_PRS_C13": s_int(drugs.cip13[t["code"]]),
        "PHA_PRS_IDE": s_int(drugs.cip7[t["code"]]),
    })
    detail("BIO", "ER_BIO_F", lambda t, lp, o, Fd: {
        "BIO_ACT_QSN": s_int(t["qty"]),
        "BIO_ORD_NUM": s_int(o),
        "BIO_PRS_IDE": s_int(codes.bio[t["code"]]),
    })
    detail("CAM", "ER_CAM_F", lambda t, lp, o, Fd: {
        "CAM_ACT_COD": s_const("1", t.n),
        "CAM_ACT_PRU": s_cents(t["price"]),
        "CAM_ORD_NUM": s_int(o),
        "CAM_PRS_IDE": s_take(ccam, t["code"]),
        "CAM_REM_BSE": s_cents(t["price"]),
    })
    detail("TIP", "ER_TIP_F", lambda t, lp, o, Fd: {
        "TIP_ACL_DTD": Fd.date("TIP_ACL_DTD", dtd[lp]),
        "TIP_ACL_DTF": Fd.date("TIP_ACL_DTF", dtf[lp]),
        "TIP_ACT_PRU": s_cents(t["price"]),
        "TIP_ACT_QSN": s_int(t["qty"]),
        "TIP_ORD_NUM": s_int(o),
        "TIP_PRS_IDE": s_int(codes.lpp[t["code"]]),
        "TIP_PRS_TYP": s_const("1", t.n),
        "TIP_PUB_PRX": s_cents(t["price"]),
    })
    detail("UCD", "ER_UCD_F", lambda t, lp, o, Fd: {
        "UCD_DLV_NBR": s_int(t["qty"]),
        "UCD_FAC_PRU": s_cents(t["price"]),
        "UCD_ORD_NUM": s_int(o),
        "UCD_TOP_UCD": s_const("1", t.n),
        "UCD_UCD_COD": s_take(ucd, t["code"]),
    })
    detail("ETE", "ER_ETE_F", lambda t, lp, o, Fd: {
        "ETB_EXE_FIN": s_take(finess, t["etab"]),
        "ETE_IND_TAA": s_int(t["taa"], null=t["taa"] < 0),
        "ETE_TYP_COD": s_int(t["typ"]),
        "PRS_PPU_SEC": s_int(L["ppu"][lp]),
    })
    if profile.has("extra_tables"):
        # ER_ARO_F: the complementary (CMU-C) reimbursement of the kept lines that have one, in flux order
        aro = np.flatnonzero((L["role"] == D.ROLE_WORLD) & (L["cpl"] != 0))

        def make_aro(a, b):
            r = aro[a:b]
            k = len(r)
            cpl, base, rate = L["cpl"][r], L["base"][r], L["rate"][r].astype(np.int64)
            return {
                "ARO_ASU_NAT": s_const("10", k), "ARO_CPL_COD": s_const("0", k), "ARO_ENV_TYP": s_const("0", k),
                "ARO_FJH_TYP": s_const("0", k), "ARO_FTA_COD": s_const("0", k), "ARO_MIN_TAU": s_const("0.00", k),
                "ARO_MOD_MNT": s_const("0.00", k), "ARO_ORD_NUM": s_const("1", k), "ARO_PRS_NAT": s_int(L["nat"][r]),
                "ARO_REM_BSE": s_cents(base), "ARO_REM_MNT": s_cents(cpl), "ARO_REM_PRU": s_fixed(base * 1000, 5),
                "ARO_REM_SGN": s_int(np.where(cpl < 0, -1, 1)), "ARO_REM_TAU": s_fixed((100 - rate) * 100, 2),
                "ARO_REM_TYP": s_const("1", k), "ARO_THE_TAU": s_int(100 - rate),
                "ORG_CLE_NEW": s_take(org, pid[r]), **keys(r),
            }

        files["ER_ARO_F.csv"] = FileData("ER_ARO_F", None, Lazy(len(aro), make_aro), [])
    return files, {"order": order}


# ======================================================================================= PMSI
ERR_RULE = {P.MCO: "mco_error_ghm", P.SSR: "ssr_error_gme", P.HAD: "had_error_ghpc"}
RULE_ROLE = {"pmsi_bad_chaining": P.ROLE_CHAINING, "pmsi_placeholder_nir": P.ROLE_PLACEHOLDER,
             "pmsi_geographic_finess_duplicate": P.ROLE_GEO_COPY, "mco_ghs_9999": P.ROLE_GHS9999,
             "mco_error_ghm": P.ROLE_ERROR, "ssr_error_gme": P.ROLE_ERROR, "had_error_ghpc": P.ROLE_ERROR}


def rule_counts(roles: np.ndarray, rules) -> dict:
    """Rows removed per cleaning rule, given the role of each row's stay (visit)."""
    return {r: int(np.sum(roles == RULE_ROLE[r])) for r in rules}


def sub_rules(s_i: int) -> list:
    """The rules under which the rows of a stay's billing / valuation sub-tables are counted: the stay's
    rules except the placeholder NIR (dropped by ingest with the C row: the sub-rows are then orphans)."""
    if s_i == P.RIP:
        return ["pmsi_bad_chaining"]
    return ["pmsi_bad_chaining", "pmsi_geographic_finess_duplicate", ERR_RULE[s_i]] + (["mco_ghs_9999"] if s_i == P.MCO else [])


def _opt(values: np.ndarray) -> pa.Array:
    """numpy strings -> pa strings, '' as null."""
    return s_null_empty(pa.array(np.asarray(values).astype(str), pa.string()))


def render_pmsi(rng, pm: P.Pmsi, p: Patients, codes: Codes, period: Period, profile: Profile) -> tuple[dict, dict]:
    st = pm.stays
    files: dict[str, FileData] = {}
    dots: dict[str, int] = {}
    per_file_cleaning: dict[str, dict] = {}
    for y in period.years:
        yy = f"{y % 100:02d}"
        for s_i, s in enumerate(P.SOURCES):
            sel = np.flatnonzero((st["src"] == s_i) & (st["year"] == y))
            o = np.lexsort((st["eta"][sel], st["ident"][sel]))
            sel = sel[o]
            n = len(sel)
            pos = np.full(st.n, -1)
            pos[sel] = np.arange(n)
            pid = st["pid"][sel]
            start, end = st["start"][sel], st["end"][sel]
            role = st["role"][sel]
            eta = s_take(codes.finess, st["eta"][sel])
            width = P.ID_WIDTH[s_i]
            ident = s_zero_pad(st["ident"][sel], width)
            sex = s_int(p.sex[pid])
            dep = s_take(pa.array(_dpt2(codes, p.dpt).astype(str)), pid)
            age = age_years(p.birth[pid], start)
            # patient column and chaining codes (C tables)
            nir = p.psa[pid].astype(object)
            ph = role == P.ROLE_PLACEHOLDER
            nir[ph] = np.array(PLACEHOLDER_NIRS, dtype=object)[np.arange(ph.sum()) % 2]
            ret = {c: np.zeros(n, dtype=np.int64) for c in P.CHAINING_COLUMNS}
            chc = st["chain_col"][sel]
            for j, c in enumerate(P.CHAINING_COLUMNS):
                ret[c][(role == P.ROLE_CHAINING) & (chc == j)] = 1
            bsfx = "RSA" if s_i == P.RIP else "B"
            bname, cname = f"T_{s}{yy}{bsfx}", f"T_{s}{yy}C"
            tb, tc = f"T_{s}aa{bsfx}", f"T_{s}aaC"
            real = role != P.ROLE_MALFORMED  # stays with billing / valuation rows
            Fb, Fc = Formatter(profile, tb), Formatter(profile, tc)
            reasons = st["reason"][sel]
            cor_b = [(i, r[2:]) for i, r in enumerate(reasons) if r is not None and r.startswith("B:")]
            cor_c = [(i, r[2:]) for i, r in enumerate(reasons) if r is not None and r.startswith("C:")]
            # cleaning counts of this file (stays)
            per_file_cleaning[cname + ".csv"] = rule_counts(role, ["pmsi_bad_chaining", "pmsi_placeholder_nir"])
            if s_i == P.RIP:  # T_RIPaaRSA: one row per stay, counted like the sub-tables
                per_file_cleaning[bname + ".csv"] = rule_counts(role, sub_rules(s_i))
            else:  # B rows (SSR: one per week)
                per_file_cleaning[bname + ".csv"] = rule_counts(
                    np.repeat(role, st["weeks"][sel]), sub_rules(s_i)[1:])

            c_common = {
                "NIR_ANO_17": pa.array(nir.astype(str)),
                **{c: s_int(ret[c]) for c in P.CHAINING_COLUMNS},
                "COH_NAI_RET": s_const("0", n), "COH_SEX_RET": s_const("0", n),
                "ENT_DAT": Fc.date("ENT_DAT", start), "SOR_DAT": Fc.date("SOR_DAT", end),
                "EXE_SOI_DTD": Fc.date("EXE_SOI_DTD", start), "EXE_SOI_DTF": Fc.date("EXE_SOI_DTF", end),
                "EXE_SOI_AMD": Fc.date("EXE_SOI_AMD", start),
                "SOR_ANN": Fc.date("SOR_ANN", end), "SOR_MOI": Fc.date("SOR_MOI", end),
            }
            if s_i == P.MCO:
                kind = st["kind"][sel]
                seance = kind == "seance"
                ghm = st["ghm"][sel]
                das_m = np.isin(pm.das["stay"], sel)
                act_m = np.isin(pm.acts["stay"], sel)
                um_m = np.isin(pm.um["stay"], sel)
                n_das = np.bincount(pos[pm.das["stay"][das_m]], minlength=n)
                n_act = np.bincount(pos[pm.acts["stay"][act_m]], minlength=n)
                n_um = np.bincount(pos[pm.um["stay"][um_m]], minlength=n)
                dr = st["dr"][sel]
                b = {
                    "ETA_NUM": eta, "RSA_NUM": ident, "AGE_ANN": s_int(np.maximum(age, 0)), "COD_SEX": sex, "BDI_DEP": dep,
                    "DGN_PAL": dotted(rng, codes, st["dp"][sel], dots, tb),
                    "DGN_REL": dotted(rng, codes, np.maximum(dr, 0), dots, tb, null=dr < 0),
                    "ENT_MOD": pa.array(st["ent_mod"][sel].astype(str)),
                    "ENT_PRV": pc.if_else(pa.array(st["ent_prv"][sel] == ""), pa.nulls(n, pa.string()), pa.array(st["ent_prv"][sel].astype(str))),
                    "GHS_NUM": s_int(st["ghs"][sel], null=st["ghs"][sel] == 0),
                    "GRG_GHM": s_take(codes.ghm, ghm),
                    "GRG_RET": s_const("0", n),
                    "NBR_ACT": s_int(n_act), "NBR_DGN": s_int(n_das), "NBR_RUM": s_int(n_um),
                    "NBR_SEA": s_int(seance.astype(np.int64)),
                    "RSS_NUM": s_zero_pad(st["ident"][sel] % 10**8, 8),
                    "SEJ_NBJ": s_int(end - start, null=seance),
                    "SOR_ANN": Fb.date("SOR_ANN", end), "SOR_MOI": Fb.date("SOR_MOI", end),
                    "SOR_MOD": pa.array(st["sor_mod"][sel].astype(str)),
                    "SOR_DES": pc.if_else(pa.array(st["sor_des"][sel] == ""), pa.nulls(n, pa.string()), pa.array(st["sor_des"][sel].astype(str))),
                    "TYP_GEN_RSA": s_int(st["typ_gen"][sel]),
                }
                if profile.has("return_codes3"):
                    b.update(_return_codes3(role, "GRG_RET", "GRC_RET"))
                    b["GHS_NUM"] = _ghs_letters(st, sel, b["GHS_NUM"])
                files[bname + ".csv"] = FileData(tb, y, b, cor_b)
                c = {"ETA_NUM": eta, "RSA_NUM": ident, "SEJ_NUM": s_int(st["sej_num"][sel]),
                     "EXE_SOI_AMF": Fc.date("EXE_SOI_AMF", end), **c_common}
                files[cname + ".csv"] = FileData(tc, y, c, cor_c)
                # D: associated diagnoses
                dd = pm.das.take(np.flatnonzero(das_m))
                dp_ = pos[dd["stay"]]
                o2 = np.lexsort((rank_in_group(dd["stay"]), dp_))
                dd, dp_ = dd.take(o2), dp_[o2]
                files[f"T_MCO{yy}D.csv"] = FileData("T_MCOaaD", y, {
                    "ASS_DGN": dotted(rng, codes, dd["icd"], dots, "T_MCOaaD"),
                    "DGN_ASS_NUM": s_int(rank_in_group(dd["stay"]) + 1),
                    "ETA_NUM": eta.take(pa.array(dp_)), "RSA_NUM": ident.take(pa.array(dp_)),
                }, [])
                aa = pm.acts.take(np.flatnonzero(act_m))
                ap = pos[aa["stay"]]
                o2 = np.lexsort((aa["delay"], ap))
                aa, ap = aa.take(o2), ap[o2]
                files[f"T_MCO{yy}A.csv"] = FileData("T_MCOaaA", y, {
                    "ACV_ACT": s_const("1", aa.n), "CDC_ACT": s_take(codes.ccam, aa["ccam"]),
                    "ENT_DAT_DEL": s_int(aa["delay"]), "ETA_NUM": eta.take(pa.array(ap)),
                    "NBR_EXE_ACT": s_const("1", aa.n), "PHA_ACT": s_const("0", aa.n), "RSA_NUM": ident.take(pa.array(ap)),
                }, [])
                uu = pm.um.take(np.flatnonzero(um_m))
                up = pos[uu["stay"]]
                o2 = np.lexsort((uu["ord"], up))
                uu, up = uu.take(o2), up[o2]
                udr = dr[up]
                files[f"T_MCO{yy}UM.csv"] = FileData("T_MCOaaUM", y, {
                    "DGN_PAL": dotted(rng, codes, st["dp"][sel][up], dots, "T_MCOaaUM"),
                    "DGN_REL": dotted(rng, codes, np.maximum(udr, 0), dots, "T_MCOaaUM", null=udr < 0),
                    "ETA_NUM": eta.take(pa.array(up)), "PAR_DUR_SEJ": s_int(uu["dur"]),
                    "RSA_NUM": ident.take(pa.array(up)), "UM_ORD_NUM": s_int(uu["ord"]),
                    "UM_TYP": s_const("01", uu.n),
                }, [])
                mm = pm.med.take(np.flatnonzero(np.isin(pm.med["stay"], sel)))
                mp = pos[mm["stay"]]
                o2 = np.argsort(mp, kind="stable")
                mm, mp = mm.take(o2), mp[o2]
                adm = start[mp] + mm["delay"]
                Fm = Formatter(profile, "T_MCOaaMED")
                files[f"T_MCO{yy}MED.csv"] = FileData("T_MCOaaMED", y, {
                    "ADM_MOIS": Fm.date("ADM_MOIS", adm), "ADM_NBR": s_fixed(mm["nbr"], 3),
                    "ADM_NBR_PRI": s_cents(mm["price"] * mm["nbr"] // 1000),
                    "ANN": s_const(str(y), mm.n), "DAT_ADM_ANN": Fm.date("DAT_ADM_ANN", adm),
                    "DELAI": s_int(mm["delay"]), "ETA_NUM": eta.take(pa.array(mp)), "MOI": Fm.date("MOI", end[mp]),
                    "RSA_NUM": ident.take(pa.array(mp)), "UCD_UCD_COD": s_take(codes.ucd, mm["ucd"]),
                }, [])
                # DMIP: implantable devices of public surgical stays
                dm = pm.dmip.take(np.flatnonzero(np.isin(pm.dmip["stay"], sel)))
                dmp = pos[dm["stay"]]
                o2 = np.lexsort((codes.lpp[dm["lpp"]], dmp))
                dm, dmp = dm.take(o2), dmp[o2]
                pose = start[dmp] + dm["delay"]
                Fd = Formatter(profile, "T_MCOaaDMIP")
                files[f"T_MCO{yy}DMIP.csv"] = FileData("T_MCOaaDMIP", y, {
                    "ANN": s_const(str(y), dm.n), "DAT_POS_ANN": Fd.date("DAT_POS_ANN", pose), "DELAI": s_int(dm["delay"]),
                    "ETA_NUM": eta.take(pa.array(dmp)), "LPP_COD": s_int(codes.lpp[dm["lpp"]]), "MOI": Fd.date("MOI", end[dmp]),
                    "MOI_POS": Fd.date("MOI_POS", pose), "NBR_POS": s_int(dm["nbr"]), "NBR_POS_PRI": s_cents(dm["nbr"] * dm["price"]),
                    "RSA_NUM": ident.take(pa.array(dmp)), "TIP_PRS_IDE": s_int(codes.lpp[dm["lpp"]]),
                }, [])
                per_file_cleaning[f"T_MCO{yy}DMIP.csv"] = rule_counts(role[dmp], sub_rules(s_i))
                # VALO: one row per stay at a public establishment (not the malformed copies)
                valo = st["valo"][sel]
                vp = np.flatnonzero(real & (valo != P.VALO_NONE))
                ghs = st["ghs"][sel][vp]
                files[f"T_MCO{yy}VALO.csv"] = FileData("T_MCOaaVALO", y, {
                    "ETA_NUM": eta.take(pa.array(vp)),
                    "GHS_NUM": _ghs_letters(st, sel[vp], s_zero_pad(ghs, 4, null=ghs == 0)) if profile.has("return_codes3")
                    else s_zero_pad(ghs, 4, null=ghs == 0),
                    "MNT_GHS_AM": s_cents(st["mnt_ghs"][sel][vp]), "MNT_TOT_AM": s_cents(st["mnt_tot"][sel][vp]),
                    "RSA_NUM": ident.take(pa.array(vp)),
                    "VALO": _opt(np.array(["0", "1", ""])[valo[vp]]),
                }, [])
                per_file_cleaning[f"T_MCO{yy}VALO.csv"] = rule_counts(role[vp], sub_rules(s_i))
                if profile.encoding != "utf-8":
                    files[f"T_MCO{yy}E.csv"] = FileData("T_MCOaaE", y, _establishments(codes, y, profile.encoding), [])
            elif s_i == P.SSR:
                weeks = st["weeks"][sel]
                w_stay = np.repeat(np.arange(n), weeks)
                w_num = rank_in_group(w_stay)
                wstart = start[w_stay] + 7 * w_num
                das_m = np.isin(pm.das["stay"], sel)
                act_m = np.isin(pm.acts["stay"], sel)
                dd = pm.das.take(np.flatnonzero(das_m))
                aa = pm.acts.take(np.flatnonzero(act_m))
                dkey = pos[dd["stay"]] * 1000 + dd["week"]
                akey = pos[aa["stay"]] * 1000 + aa["week"]
                wkey = w_stay * 1000 + w_num
                n_dgn = np.searchsorted(np.sort(dkey), wkey, side="right") - np.searchsorted(np.sort(dkey), wkey, side="left")
                n_cam = np.searchsorted(np.sort(akey), wkey, side="right") - np.searchsorted(np.sort(akey), wkey, side="left")
                err = (role == P.ROLE_ERROR)
                gme = np.where(err, P.SSR_GME_ERROR[st["err_code"][sel] % 2], P.gme_code(st["gme"][sel]))
                mor = dotted(rng, codes, st["dp"][sel][w_stay], dots, tb)
                etl = dotted(rng, codes, st["etl"][sel][w_stay], dots, tb)
                b = {
                    "ETA_NUM": eta.take(pa.array(w_stay)), "RHA_NUM": ident.take(pa.array(w_stay)),
                    "RHS_NUM": s_int(w_num + 1), "GRG_GME": pa.array(gme[w_stay].astype(str)),
                    "AGE_ANN": s_int(np.maximum(age, 0)[w_stay]), "COD_SEX": sex.take(pa.array(w_stay)),
                    "BDI_DEP": dep.take(pa.array(w_stay)),
                    "ENT_MOD": pa.array(st["ent_mod"][sel][w_stay].astype(str)),
                    "ENT_PRV": pc.if_else(pa.array(st["ent_prv"][sel][w_stay] == ""), pa.nulls(len(w_stay), pa.string()),
                                          pa.array(st["ent_prv"][sel][w_stay].astype(str))),
                    "SOR_MOD": pa.array(st["sor_mod"][sel][w_stay].astype(str)),
                    "SOR_DES": pc.if_else(pa.array(st["sor_des"][sel][w_stay] == ""), pa.nulls(len(w_stay), pa.string()),
                                          pa.array(st["sor_des"][sel][w_stay].astype(str))),
                    "MOI_ANN": Fb.date("MOI_ANN", wstart), "MOI_ANN_SOR_SEJ": Fb.date("MOI_ANN_SOR_SEJ", end[w_stay]),
                    "RHS_ANT_SEJ_ENT": s_int(7 * w_num),
                    "MOR_PRP": mor, "ETL_AFF": etl,
                    "FP_PEC": dotted(rng, codes, st["fp"][sel][w_stay], {}, tb, share=0.0),
                    "NBR_DGN": s_int(n_dgn), "NBR_CCAM": s_int(n_cam), "HOS_TYP_UM": s_const("1", len(w_stay)),
                }
                if profile.has("return_codes3"):
                    b.update(_return_codes3(role[w_stay], "GRG_RET", "GRC_RET"))
                files[bname + ".csv"] = FileData(tb, y, b, [])
                wd = (start - 4) % 7  # 1970-01-01 was a Thursday: Monday = day - ((day - 4) % 7)
                monday = start - wd
                # (a stay admitted before the window, variant admitted_before_window: its real first Monday)
                lun = np.where(start < period.start, monday, np.maximum(monday, period.year_start(y)))
                c = {"ETA_NUM": eta, "RHA_NUM": ident, "SEJ_NUM": s_zero_pad(st["sej_num"][sel] % 100000, 5),
                     "MOI_LUN_1S": Fc.date("MOI_LUN_1S", lun),
                     "ANN_LUN_1S": Fc.date("ANN_LUN_1S", lun),
                     "EXE_SOI_AMF": Fc.date("EXE_SOI_AMD", end),  # EXE_SOI_AMF is a string column: same yyyyMM text
                     **c_common}
                if profile.has("chaining_missing_codes"):
                    for col in MISSING_CHAINING_CODES:
                        del c[col]
                files[cname + ".csv"] = FileData(tc, y, c, cor_c)
                if profile.has("extra_tables"):
                    files[f"T_SSR{yy}CSARR.csv"] = FileData("T_SSRaaCSARR", y, _csarr(
                        profile.rng("extra_tables"), role, w_stay, w_num, start, end, eta, ident), [])
                o2 = np.lexsort((dd["week"], pos[dd["stay"]]))
                dd = dd.take(o2)
                dp_ = pos[dd["stay"]]
                files[f"T_SSR{yy}D.csv"] = FileData("T_SSRaaD", y, {
                    "ETA_NUM": eta.take(pa.array(dp_)), "RHA_NUM": ident.take(pa.array(dp_)), "RHS_NUM": s_int(dd["week"] + 1),
                    "DGN_COD": dotted(rng, codes, dd["icd"], dots, "T_SSRaaD"),
                }, [])
                o2 = np.lexsort((aa["delay"], pos[aa["stay"]]))
                aa = aa.take(o2)
                ap = pos[aa["stay"]]
                files[f"T_SSR{yy}CCAM.csv"] = FileData("T_SSRaaCCAM", y, {
                    "ETA_NUM": eta.take(pa.array(ap)), "RHA_NUM": ident.take(pa.array(ap)), "RHS_NUM": s_int(aa["week"] + 1),
                    "CCAM_DEL_ENT_UM": s_int(aa["delay"]), "CCAM_ACT": s_take(codes.ccam, aa["ccam"]),
                    "CCAM_NBR_REA": s_const("1", aa.n), "CCAM_PHA_ACT": s_const("0", aa.n), "CCAM_COD_ACT": s_const("1", aa.n),
                }, [])
                files[f"T_SSR{yy}STC.csv"] = FileData("T_SSRaaSTC", y,
                                                        _stc(st, sel, real, eta, ident, "ETA_NUM", "RHA_NUM", "SEJ_FAC_AM"), [])
                per_file_cleaning[f"T_SSR{yy}STC.csv"] = rule_counts(role[real], sub_rules(s_i))
            elif s_i == P.RIP:
                c = {"ETA_NUM_EPMSI": eta, "RIP_NUM": ident, "SEJ_NUM": s_zero_pad(st["sej_num"][sel] % 100000, 5),
                     "ENT_MOI": Fc.date("ENT_MOI", start), "ENT_ANN": Fc.date("ENT_ANN", start), **c_common}
                files[cname + ".csv"] = FileData(tc, y, c, cor_c)
                b = {
                    "ETA_NUM_EPMSI": eta, "RIP_NUM": ident, "AGE_ANN": s_int(np.maximum(age, 0)), "COD_SEX": sex,
                    "FOR_ACT": s_const("01", n), "ENT_MOD": pa.array(st["ent_mod"][sel].astype(str)),
                    "ENT_PRV": _opt(st["ent_prv"][sel]), "SOR_MOD": pa.array(st["sor_mod"][sel].astype(str)),
                    "SOR_DES": _opt(st["sor_des"][sel]), "SEQ_SEQ_NUM": s_const("1", n),
                    "SEQ_FIN_MOI": Fb.date("SEQ_FIN_MOI", end), "SEQ_FIN_ANN": Fb.date("SEQ_FIN_ANN", end),
                    "SEQ_COU_NBJ": s_int(end - start + 1), "DGN_PAL": s_take(codes.icd, st["dp"][sel]),
                }
                files[bname + ".csv"] = FileData(tb, y, b, [])
                files[f"T_RIP{yy}STC.csv"] = FileData("T_RIPaaSTC", y,
                                                        _stc(st, sel, real, eta, ident, "ETA_NUM_EPMSI", "RIP_NUM", "SEJ_FAC_AM"), [])
                per_file_cleaning[f"T_RIP{yy}STC.csv"] = rule_counts(role[real], sub_rules(s_i))
            else:  # HAD
                das_m = np.isin(pm.das["stay"], sel)
                n_das = np.bincount(pos[pm.das["stay"][das_m]], minlength=n)
                err = role == P.ROLE_ERROR
                ghpc = np.where(err, P.HAD_GHPC_ERROR[st["err_code"][sel] % 2], P.ghpc_code(st["ghpc"][sel]))
                b = {
                    "ETA_NUM_EPMSI": eta, "RHAD_NUM": ident, "SEQ_NUM": s_const("1", n), "SSEQ_NUM": s_const("1", n),
                    "DGN_PAL": dotted(rng, codes, st["dp"][sel], dots, tb), "ETA_GRP_GHPC": pa.array(ghpc.astype(str)),
                    "PEC_PAL": s_take(codes.had_pec, st["pec"][sel]), "PEC_ASS": s_const("00", n),
                    "ENT_MOD": pa.array(st["ent_mod"][sel].astype(str)),
                    "ENT_PRV": pc.if_else(pa.array(st["ent_prv"][sel] == ""), pa.nulls(n, pa.string()), pa.array(st["ent_prv"][sel].astype(str))),
                    "SOR_MOD": pa.array(st["sor_mod"][sel].astype(str)),
                    "SOR_DES": pc.if_else(pa.array(st["sor_des"][sel] == ""), pa.nulls(n, pa.string()), pa.array(st["sor_des"][sel].astype(str))),
                    "SEJ_NBJ": s_int(end - start + 1), "SOR_ANN": Fb.date("SOR_ANN", end), "SOR_MOI": Fb.date("SOR_MOI", end),
                    "AGE_ANN": s_int(np.maximum(age, 0)), "COD_SEX": sex, "NBR_DGN": s_int(n_das), "BDI_DEP": dep,
                }
                if profile.has("return_codes3"):
                    b.update(_return_codes3(role, "ETA_GRP_RET"))
                files[bname + ".csv"] = FileData(tb, y, b, [])
                if profile.has("extra_tables"):
                    files[f"T_HAD{yy}A.csv"] = FileData("T_HADaaA", y, _had_acts(
                        profile.rng("extra_tables"), codes, role, start, end, eta, ident), [])
                c = {"ETA_NUM_EPMSI": eta, "RHAD_NUM": ident, "SEJ_NUM": s_zero_pad(st["sej_num"][sel] % 100000, 5),
                     "ENT_MOI": Fc.date("ENT_MOI", start), "ENT_ANN": Fc.date("ENT_ANN", start), **c_common}
                files[cname + ".csv"] = FileData(tc, y, c, cor_c)
                dd = pm.das.take(np.flatnonzero(das_m))
                o2 = np.lexsort((rank_in_group(dd["stay"]), pos[dd["stay"]]))
                dd = dd.take(o2)
                dp_ = pos[dd["stay"]]
                files[f"T_HAD{yy}D.csv"] = FileData("T_HADaaD", y, {
                    "DGN_ASS": dotted(rng, codes, dd["icd"], dots, "T_HADaaD"), "ETA_NUM_EPMSI": eta.take(pa.array(dp_)),
                    "RHAD_NUM": ident.take(pa.array(dp_)), "SEQ_NUM": s_const("1", dd.n), "SSEQ_NUM": s_const("1", dd.n),
                }, [])
                files[f"T_HAD{yy}STC.csv"] = FileData("T_HADaaSTC", y,
                                                        _stc(st, sel, real, eta, ident, "ETA_NUM_EPMSI", "RHAD_NUM", "FAC_SEJ_AM"), [])
                per_file_cleaning[f"T_HAD{yy}STC.csv"] = rule_counts(role[real], sub_rules(s_i))
    return files, {"dotted_icd10": dots, "per_file_cleaning": per_file_cleaning}


def _return_codes3(role: np.ndarray, grouping: str, control: str | None = None) -> dict:
    """return_codes3: the grouping / control return codes of the stay tables (HDH boolean, 3-character
    codes in real files, unused by the model): the grouping code '000', '111' on the stays in an error
    group; the control code '000'."""
    out = {grouping: pa.array(np.where(role == P.ROLE_ERROR, "111", "000"))}
    if control:
        out[control] = s_const("000", len(role))
    return out


def _ghs_letters(st, idx, ghs: pa.Array) -> pa.Array:
    """return_codes3: GHS_NUM of the stays `idx` holding a letter code ('D11') where the variant drew one."""
    letter = st["ghs_letter"][idx]
    if not np.any(letter >= 0):
        return ghs
    return pc.if_else(pa.array(letter >= 0), s_take(GHS_LETTER_CODES, np.maximum(letter, 0)), ghs)


CSARR_CODES = np.array(["ALQ+279", "ALQ+137", "PEB+212", "NKR+242", "DKR+079", "GKQ+164", "ZZC+215", "ALT+166",
                        "PCM+156", "AGR+098", "NKQ+092", "ZGT+132"])
CSARR_INTERVENANTS = np.array(["10", "21", "26", "41", "61"])


def _null(n: int) -> pa.Array:
    return pa.nulls(n, pa.string())


def _csarr(rng, role, w_stay, w_num, start, end, eta, ident) -> dict:
    """extra_tables: T_SSRaaCSARR, 1-4 rehabilitation acts (CSARR) per RHS week of the kept stays of the file
    (keys ETA_NUM, RHA_NUM, RHS_NUM of T_SSRaaB), every column of the HDH schema."""
    k = np.where(role[w_stay] == P.ROLE_WORLD, rng.integers(1, 5, len(w_stay)), 0)
    r = np.repeat(np.arange(len(w_stay)), k)
    n = len(r)
    ws, wn = w_stay[r], w_num[r]
    span = np.minimum(6, end[ws] - start[ws] - 7 * wn)
    delay = 7 * wn + np.floor(rng.random(n) * (np.maximum(span, 0) + 1)).astype(np.int64)
    idx = pa.array(ws)
    return {
        "ETA_NUM": eta.take(idx), "RHA_VER": s_const("M11", n), "RHA_NUM": ident.take(idx), "RHS_NUM": s_int(wn + 1),
        "CSARR_COD": s_take(CSARR_CODES, rng.integers(0, len(CSARR_CODES), n)), "APP_SUP": _null(n),
        "MOD_LIEU": _null(n), "MOD_PAT_1": _null(n), "MOD_PAT_2": _null(n),
        "TYP_INTERV": s_take(CSARR_INTERVENANTS, rng.integers(0, len(CSARR_INTERVENANTS), n)),
        "CLAS_NBR_PAT_PS": s_const("1", n), "NBR_CSARR": s_int(rng.integers(1, 6, n)), "COMP_SEM": s_const("1", n),
        "ENT_DAT_DEL_UM": s_int(delay), "NBR_PAT_INTERV": s_const("1", n), "NBR_INTERV": s_const("1", n), "EXT_DOC": _null(n),
    }


def _had_acts(rng, codes: Codes, role, start, end, eta, ident) -> dict:
    """extra_tables: T_HADaaA, 1-3 CCAM acts per kept HAD stay of the file (keys ETA_NUM_EPMSI, RHAD_NUM of
    T_HADaaB), every column of the HDH schema. Not read by the model (RULES.md lists HAD CCAM_COD, the
    truth's procedures do not)."""
    k = np.where(role == P.ROLE_WORLD, rng.integers(1, 4, len(role)), 0)
    r = np.repeat(np.arange(len(role)), k)
    n = len(r)
    atm = np.flatnonzero(np.isin(codes.ccam_rgt, ["ATM", "ADI"]))
    delay = np.floor(rng.random(n) * (end[r] - start[r] + 1)).astype(np.int64)
    idx = pa.array(r)
    e = eta.take(idx)
    return {
        "ACT_COD": s_const("1", n), "CCAM_COD": s_take(codes.ccam, atm[rng.integers(0, len(atm), n)]), "EXT_PMSI": _null(n),
        "DEL_DEB_SSEQ": s_int(delay), "ETA_NUM_EPMSI": e, "ETA_NUM_GEO": e, "EXT_DOC": _null(n), "PHA_COD": s_const("0", n),
        "REAL_NBR": s_const("1", n), "RHAD_NUM": ident.take(idx), "SEQ_NUM": s_const("1", n), "SSEQ_NUM": s_const("1", n),
        "VAL_DAT_SSEQ": s_const("1", n), "ETA_NUM_TWO": e,
    }


CITY = {"75": ("Paris", "Île-de-France"), "92": ("Neuilly-sur-Seine", "Île-de-France"),
        "13": ("Marseille", "Provence-Alpes-Côte d’Azur"), "06": ("Nice", "Provence-Alpes-Côte d’Azur"),
        "69": ("Lyon", "Auvergne-Rhône-Alpes"), "33": ("Bordeaux", "Nouvelle-Aquitaine"), "59": ("Lille", "Hauts-de-France"),
        "31": ("Toulouse", "Occitanie"), "44": ("Nantes", "Pays de la Loire"), "67": ("Strasbourg", "Grand Est"),
        "2A": ("Ajaccio", "Corse")}


def _establishments(codes: Codes, year: int, encoding: str) -> dict:
    """latin1 / cp1252: T_MCOaaE, the MCO establishments of the year file (one row per FINESS reporting MCO),
    with free-text names and regions (accents; ’ and – in Windows-1252) that the model does not read, so that a
    PMSI delivery too shows a wrong decoding."""
    labels = {r["finess"]: r["label"] for r in read_ref("finess")}
    rows = [i for i, src in enumerate(codes.finess_sources) if "MCO" in str(src).split()]
    dash, apos = (" – ", "’") if encoding == "cp1252" else (" - ", "'")
    fin = [str(codes.finess[i]) for i in rows]
    city = [CITY.get(f[:2], ("", "")) for f in fin]
    k = len(rows)
    return {
        "ANN_TRT": s_const(f"{year}T4", k), "ETA_NUM": pa.array(fin), "ETB_EXE_FIN": pa.array([f[:8] for f in fin]),
        "REG_ETA": pa.array([c[1].replace("’", apos) for c in city]),
        "SOC_RAI": pa.array([(labels[f].split(" (")[0] + (dash + c[0] if c[0] else ""))[:80] for f, c in zip(fin, city)]),
        "STA_ETA": pa.array(["DG" if codes.finess_sector[i] == "public" else "OQN" for i in rows]),
        "VAL_ETA": s_const("données validées", k),
    }


def _stc(st, sel, real, eta, ident, eta_col: str, id_col: str, fac_col: str) -> dict:
    """T_SSRaaSTC / T_HADaaSTC / T_RIPaaSTC: one row per stay of the file (not the malformed copies)."""
    r = np.flatnonzero(real)
    idx = pa.array(r)
    g = lambda k: st[k][sel][r]  # noqa: E731
    return {eta_col: eta.take(idx), id_col: ident.take(idx), fac_col: s_int(g("fac")),
            "TOT_MNT_AM": s_cents(g("stc_tot")), "REM_BAS_MNT": s_cents(g("stc_base")), "REM_TAU": s_int(g("stc_rate"))}


# ======================================================================================= ACE
def render_ace(ace: A.Ace, p: Patients, codes: Codes, period: Period, profile: Profile) -> tuple[dict, dict]:
    """T_MCOyyCSTC / FBSTC / VALOACE per visit year, ordered by (SEQ_NUM, ETA_NUM)."""
    v = ace.visits
    files: dict[str, FileData] = {}
    per_file_cleaning: dict[str, dict] = {}
    for y in period.years:
        yy = f"{y % 100:02d}"
        sel = np.flatnonzero(v["year"] == y)
        sel = sel[np.lexsort((v["eta"][sel], v["seq"][sel]))]
        n = len(sel)
        pos = np.full(v.n, -1)
        pos[sel] = np.arange(n)
        role = v["role"][sel]
        date = v["date"][sel]
        eta = s_take(codes.finess, v["eta"][sel])
        seq = s_zero_pad(v["seq"][sel], 9)
        nir = p.psa[v["pid"][sel]].astype(object)
        ph = role == P.ROLE_PLACEHOLDER
        nir[ph] = np.array(PLACEHOLDER_NIRS, dtype=object)[np.arange(ph.sum()) % 2]
        chc = v["chain_col"][sel]
        Fc = Formatter(profile, "T_MCOaaCSTC")
        files[f"T_MCO{yy}CSTC.csv"] = FileData("T_MCOaaCSTC", y, {
            "ENT_DAT": Fc.date("ENT_DAT", date), "ETA_NUM": eta, "EXE_SOI_AMD": Fc.date("EXE_SOI_AMD", date),
            "EXE_SOI_DTD": Fc.date("EXE_SOI_DTD", date), "EXE_SOI_DTF": Fc.date("EXE_SOI_DTF", date),
            "NIR_ANO_17": pa.array(nir.astype(str)), "SEQ_NUM": seq, "SOR_DAT": Fc.date("SOR_DAT", date),
            **{c: s_int((role == P.ROLE_CHAINING) & (chc == j)) for j, c in enumerate(A.CHAINING_COLUMNS)},
        }, [])
        per_file_cleaning[f"T_MCO{yy}CSTC.csv"] = rule_counts(
            role, ["pmsi_bad_chaining", "pmsi_placeholder_nir", "pmsi_geographic_finess_duplicate"])
        a = ace.acts.take(np.flatnonzero(np.isin(ace.acts["visit"], sel)))
        ap = pos[a["visit"]]
        o = np.argsort(ap, kind="stable")
        a, ap = a.take(o), ap[o]
        Ff = Formatter(profile, "T_MCOaaFBSTC")
        files[f"T_MCO{yy}FBSTC.csv"] = FileData("T_MCOaaFBSTC", y, {
            "ACT_COD": s_take(A.ACT_CODES, a["code"]), "ACT_COE": s_const("1.00", a.n), "ACT_NBR": s_const("1", a.n),
            "ETA_NUM": eta.take(pa.array(ap)), "PRI_UNI": s_cents(a["price"]), "REM_BAS": s_cents(a["price"]),
            "REM_TAU": s_int(v["rate"][sel][ap]), "SEQ_NUM": seq.take(pa.array(ap)),
            "SOR_ANN": Ff.date("SOR_ANN", date[ap]), "SOR_MOI": Ff.date("SOR_MOI", date[ap]),
        }, [])
        per_file_cleaning[f"T_MCO{yy}FBSTC.csv"] = rule_counts(role[ap], ["pmsi_bad_chaining", "pmsi_geographic_finess_duplicate"])
        files[f"T_MCO{yy}VALOACE.csv"] = FileData("T_MCOaaVALOACE", y, {
            "ETA_NUM": eta, "mnt_br": s_cents(v["mnt_br"][sel]), "mnt_remb": s_cents(v["mnt_remb"][sel]), "SEQ_NUM": seq,
            "valo": _opt(np.array(["0", "1", ""])[v["valo"][sel]]),
        }, [])
        per_file_cleaning[f"T_MCO{yy}VALOACE.csv"] = rule_counts(role, ["pmsi_bad_chaining", "pmsi_geographic_finess_duplicate"])
        if profile.has("extra_tables"):
            geo_old = (codes.finess_kind[v["eta"][sel]] == "geo") & (y <= P.GEO_DUPLICATE_LAST_YEAR)
            files[f"T_MCO{yy}FCSTC.csv"] = FileData("T_MCOaaFCSTC", y, _fcstc(
                profile.rng("extra_tables"), codes, (role == P.ROLE_WORLD) & ~geo_old, nir, v["rate"][sel], date, eta, seq,
                Formatter(profile, "T_MCOaaFCSTC")), [])
    return files, {"per_file_cleaning": per_file_cleaning}


FCSTC_ACTS = np.array(["ATM", "ADI", "ADE", "ADC", "ACO"])
FCSTC_PRICE = np.array([2000, 4500, 6900, 3800, 8200])  # cents


def _fcstc(rng, codes: Codes, ok, nir, rate, date, eta, seq, F: Formatter) -> dict:
    """extra_tables: T_MCOaaFCSTC, the CCAM fees of 30 % of the kept outpatient visits of the year (keys
    ETA_NUM, SEQ_NUM of T_MCOaaCSTC; the visit's patient; return codes '0'), every column of the HDH schema.
    Not valued by the model (ACE costs are T_MCOaaVALOACE)."""
    r = np.flatnonzero(ok & (rng.random(len(ok)) < 0.3))
    n = len(r)
    a = rng.integers(0, len(FCSTC_ACTS), n)
    price = FCSTC_PRICE[a]
    amo = price * rate[r] // 100
    idx = pa.array(r)
    e = eta.take(idx)
    zero = s_const("0", n)
    return {
        "ACT_COD": s_take(FCSTC_ACTS, a), "ACT_COE": s_const("1.00", n), "ACT_DNB": s_const("1", n), "ACT_NBR": s_const("1", n),
        "AMC_MNR": s_cents(price - amo), "AMO_MNR": s_cents(amo), "COEF_MCO": s_const("1.0000", n), "CONSULT_MIG": _null(n),
        "DEL_DAT_ENT": zero, "ETA_NUM": e, "ETA_NUM_GEO": e, "EXE_SPE": s_take(np.array(["01", "02", "06", "07"]), rng.integers(0, 4, n)),
        "EXO_TM": zero, "HON_MNT": s_cents(price), "NUM_FAC": s_const("001", n), "PRI_UNI": s_cents(price), "PSH_DMT": _null(n),
        "PSH_MDT": _null(n), "REM_BAS": s_cents(price), "REM_TAU": s_int(rate[r]), "RSF_TYP": s_const("2", n),
        "SEQ_NUM": seq.take(idx), "SOR_ANN": F.date("SOR_ANN", date[r]), "SOR_MOI": F.date("SOR_MOI", date[r]),
        "TYP_ART": s_const("C", n), "DAT_RET": zero, "NIR_ANO_17": pa.array(nir[r].astype(str)), "NIAS_RET": zero,
        "SEX_RET": zero, "NOE_MNR": _null(n), "NOE_OPE": _null(n), "NIR_RET": zero,
    }


# ======================================================================================= referentials
FORM_LABELS = {"CPR": "comprimé", "CPR PELLICULÉ": "comprimé pelliculé", "GÉLULE": "gélule", "CPR SÉCABLE": "comprimé sécable",
               "CPR ENROBÉ": "comprimé enrobé", "CPR EFFERVESCENT": "comprimé effervescent",
               "GÉLULE GASTRO-RÉSISTANTE": "gélule gastro-résistante"}
GROUP_NOTES = {"latin-1": ("à prendre après le repas", "ne pas dépasser la dose prescrite", "générique, même efficacité"),
               "cp1252": ("à prendre après le repas", "voir la notice d’utilisation", "générique – même efficacité",
                          "prix limite de vente : 1,20 € la boîte")}


def _group_labels(drugs: Drugs, encoding: str) -> pa.Array:
    """latin1 / cp1252: IR_PHA_R.PHA_GRS_NOM, a free-text label (lower-case accents é è à; in Windows-1252 also
    ’ – €, of its 0x80-0x9F range) that the model does not read, so that a wrong decoding shows."""
    notes = np.array(GROUP_NOTES[encoding])
    inn = np.array([x.split(",")[0][:40].strip().capitalize() for x in drugs.atc_label])
    form = np.array([FORM_LABELS.get(f, f.lower()) for f in drugs.form])
    dose = np.array([f"{v:g} {u}" for v, u in zip(drugs.strength, drugs.unit)])
    note = notes[np.arange(len(inn)) % len(notes)]
    return pa.array(np.char.add(np.char.add(np.char.add(np.char.add(inn, " "), dose), ", "),
                                np.char.add(np.char.add(form, ", boîte de "),
                                            np.char.add(drugs.units.astype(str), np.char.add(" (", np.char.add(note, ")"))))))


DEATH_CAUSES = ["I219", "I639", "I64", "C349", "C189", "C509", "J449", "I509", "F03", "G309", "J189", "A419", "N189",
                "E149", "R99", "X599", "K746", "C61", "C259", "I251"]


def render_refs(rng, p: Patients, drugs: Drugs, codes: Codes, period: Period, profile: Profile) -> tuple[dict, dict]:
    files = {}
    n = p.n
    F = Formatter(profile, "IR_BEN_R")
    idr = p.death_src["IR_BEN_R"]
    dcd = np.where(idr == NULL_DAY, PLACEHOLDER_DEATH, idr)
    ins = np.maximum(p.birth, period.start - 3650) + rng.integers(0, 200, n)
    files["IR_BEN_R.csv"] = FileData("IR_BEN_R", None, {
        "BEN_NIR_PSA": pa.array(p.psa.astype(str)), "BEN_RNG_GEM": s_const("1", n),
        "BEN_NIR_ANO": pa.array(p.nir_ano.astype(str)), "BEN_IDT_ANO": pa.array(p.idt_ano.astype(str)),
        "BEN_IDT_TOP": s_const("1", n), "BEN_CDI_NIR": pa.array(p.cdi_nir.astype(str)),
        "BEN_NAI_ANN": F.date("BEN_NAI_ANN", p.birth), "BEN_NAI_MOI": F.date("BEN_NAI_MOI", p.birth),
        "BEN_SEX_COD": s_int(p.sex), "BEN_DCD_DTE": F.date("BEN_DCD_DTE", dcd), "BEN_DCD_AME": F.date("BEN_DCD_AME", dcd),
        "ORG_AFF_BEN": pa.array(p.org.astype(str)), "BEN_RES_DPT": s_take(codes.dpt, p.dpt),
        "BEN_DTE_INS": F.date("BEN_DTE_INS", ins), "BEN_DTE_MAJ": F.date("BEN_DTE_MAJ", np.full(n, period.flux_cap)),
        "MAX_TRT_DTD": F.date("MAX_TRT_DTD", np.full(n, period.flux_cap)),
    }, [])
    # IR_IMB_R
    F = Formatter(profile, "IR_IMB_R")
    a = p.ald_pid.size
    dots: dict[str, int] = {}
    end = np.where(p.ald_end == NULL_DAY, PLACEHOLDER_DEATH, p.ald_end)
    files["IR_IMB_R.csv"] = FileData("IR_IMB_R", None, {
        "BEN_NIR_PSA": s_take(p.psa, p.ald_pid), "BEN_RNG_GEM": s_const("1", a),
        "IMB_ALD_DTD": F.date("IMB_ALD_DTD", p.ald_start), "IMB_ALD_DTF": F.date("IMB_ALD_DTF", end),
        "IMB_ALD_NUM": s_int(codes.icd_ald[p.ald_icd]), "IMB_ETM_NAT": s_const("41", a),
        "MED_MTF_COD": dotted(rng, codes, p.ald_icd, dots, "IR_IMB_R", share=0.06), "MED_NCL_IDT": s_const("CIM10", a),
        "INS_DTE": F.date("INS_DTE", p.ald_start + rng.integers(0, 30, a)),
        "UPD_DTE": F.date("UPD_DTE", p.ald_start + rng.integers(30, 60, a)),
    }, [])
    # IR_PHA_R
    m = len(drugs.cip13)
    files["IR_PHA_R.csv"] = FileData("IR_PHA_R", None, {
        "PHA_CIP_C13": s_int(drugs.cip13), "PHA_PRS_IDE": s_int(drugs.cip7), "PHA_MED_NOM": pa.array(drugs.name.astype(str)),
        "PHA_FRM_LIB": pa.array(drugs.form.astype(str)), "PHA_LAB_NOM": pa.array(drugs.lab.astype(str)),
        "PHA_NOM_PA": pa.array(drugs.atc_label.astype(str)),
        "PHA_ATC_C07": pa.array(drugs.atc.astype(str)), "PHA_ATC_L07": pa.array(drugs.atc_label.astype(str)),
        "PHA_ATC_C03": pa.array(np.array([x[:3] for x in drugs.atc])),
        "PHA_DOS_UNI": pa.array(drugs.unit.astype(str)),
        "PHA_SUB_DOS": pa.array(np.array([f"{v:g}" for v in drugs.strength])),
        "PHA_UPC_NBR": s_int(drugs.units),
        **({"PHA_GRS_NOM": _group_labels(drugs, profile.encoding)} if profile.encoding != "utf-8" else {}),
    }, [])
    files["REF_ATC_DDD.csv"] = FileData("REF_ATC_DDD", None, {
        "ATC_COD": pa.array(drugs.ref_atc.astype(str)), "ADM_ROUTE": pa.array(drugs.ref_route.astype(str)),
        "DDD_VAL": pa.array(np.array([f"{v:g}" for v in drugs.ref_ddd])), "DDD_UNI": pa.array(drugs.ref_unit.astype(str)),
    }, [])
    # CépiDc: KI_CCI_R (one row per death, initial cause) and KI_ECD_R (all causes)
    kid = np.flatnonzero(p.death_src["KI_CCI_R"] != NULL_DAY)
    k = len(kid)
    kdate = p.death_src["KI_CCI_R"][kid]
    icd_of = {c: i for i, c in enumerate(codes.icd)}
    cause_pool = np.array([icd_of[c] for c in DEATH_CAUSES if c in icd_of] or [0])
    # initial cause: the patient's (first) ALD when there is one, else a common cause of death
    first_ald = np.full(n, -1)
    upid, ufirst = np.unique(p.ald_pid, return_index=True)
    first_ald[upid] = p.ald_icd[ufirst]
    cause = np.where(first_ald[kid] >= 0, first_ald[kid], cause_pool[rng.integers(0, len(cause_pool), k)])
    enc = random_ids(rng, k)
    Fk = Formatter(profile, "KI_CCI_R")
    files["KI_CCI_R.csv"] = FileData("KI_CCI_R", None, {
        "DCD_IDT_ENC": pa.array(enc.astype(str)), "BEN_IDT_ANO": s_take(p.idt_ano, kid), "BEN_IDT_TOP": s_const("1", k),
        "BEN_NIR_ANO": s_take(p.nir_ano, kid), "FLX_PER_ANN": Fk.date("FLX_PER_ANN", kdate),
        "BEN_RES_DPT": s_take(codes.dpt, p.dpt[kid]),
        "BEN_DCD_DTE": Fk.date("BEN_DCD_DTE", kdate), "BEN_DCD_AME": Fk.date("BEN_DCD_AME", kdate),
        "BEN_NAI_ANN": Fk.date("BEN_NAI_ANN", p.birth[kid]), "BEN_NAI_MOI": Fk.date("BEN_NAI_MOI", p.birth[kid]),
        "BEN_SEX_COD": s_int(p.sex[kid]), "DCD_CIM_COD": s_take(codes.icd, cause),
    }, [])
    nother = rng.integers(0, 4, k)
    e_row = np.repeat(np.arange(k), 1 + nother)
    rank = rank_in_group(e_row)
    e_icd = np.where(rank == 0, cause[e_row], rng.integers(0, len(codes.icd), len(e_row)))
    Fe = Formatter(profile, "KI_ECD_R")
    files["KI_ECD_R.csv"] = FileData("KI_ECD_R", None, {
        "DCD_IDT_ENC": pa.array(enc[e_row].astype(str)), "BEN_IDT_ANO": s_take(p.idt_ano, kid[e_row]),
        "BEN_IDT_TOP": s_const("1", len(e_row)), "BEN_NIR_ANO": s_take(p.nir_ano, kid[e_row]),
        "FLX_PER_ANN": Fe.date("FLX_PER_ANN", kdate[e_row]), "CER_LIG_NUM": s_int(rank + 1),
        "ECD_CAU_RNG": s_int(rank + 1), "ECD_CAU_LIB": s_take(codes.icd_label, e_icd), "ECD_CIM_COD": s_take(codes.icd, e_icd),
        "BEN_DCD_DTE": Fe.date("BEN_DCD_DTE", kdate[e_row]), "BEN_DCD_AME": Fe.date("BEN_DCD_AME", kdate[e_row]),
    }, [])
    return files, {"dotted_icd10": dots}
