"""PMSI: hospital stays of the world (MCO, SSR, HAD, RIP) with their sub-table rows, then planted anomalies.

MCO stays are at public establishments (ordinary hospitals, AP-HP/AP-HM/HCL), except the private clinic
(ex-OQN) stays, one per world DCIR clinic line (dcir.CAT_ETAB): same patient, clinic and dates, their
cost is the DCIR line (`dcir_line`). RIP (psychiatry, RIM-P) stays are at ordinary public hospitals.
Cost attributes (valuation of public MCO stays, billing of SSR/HAD/RIP stays, TYP_GEN_RSA, the
inter-establishment modes '0') are drawn on the world stays after planting, before the copies.

Stay `role`:
  0 world stay (kept by cleaning)
  1 bad chaining code (one of NIR_RET, NAI_RET, SEX_RET, SEJ_RET, FHO_RET, PMS_RET, DAT_RET is '1')
  2 placeholder NIR_ANO_17
  3 error group (MCO GRG_GHM 90*, SSR GRG_GME 90*, HAD ETA_GRP_GHPC 99*)
  4 MCO GHS_NUM = 9999
  5 copy of a world stay under a geographic FINESS (years <= 2017)
  6 malformed (its B or C line is quarantined by ingest; B and C rows only)
Some world MCO stays have one unreadable stay date (NULLED_STAY_DATES): nulled at ingest, the stay is
kept with RULES.md's fallback date.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .codes import Codes
from .fmt import NULL_DAY, ymd
from .table import Cols, first_of_groups
from .world import Patients, Period, age_years

MCO, SSR, HAD, RIP = 0, 1, 2, 3
SOURCES = ("MCO", "SSR", "HAD", "RIP")
ID_WIDTH = (10, 7, 5, 7)  # RSA_NUM, RHA_NUM, RHAD_NUM, RIP_NUM
VALO_VALUED, VALO_ZERO, VALO_EMPTY, VALO_NONE = 1, 0, 2, -1  # T_MCOaaVALO.VALO '1', '0', empty; no row
ROLE_WORLD, ROLE_CHAINING, ROLE_PLACEHOLDER, ROLE_ERROR, ROLE_GHS9999, ROLE_GEO_COPY, ROLE_MALFORMED = range(7)
CHAINING_COLUMNS = ("NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET", "PMS_RET", "DAT_RET")
GEO_DUPLICATE_LAST_YEAR = 2017
NULLED_STAY_DATES = ("EXE_SOI_DTD", "EXE_SOI_DTF", "ENT_DAT")  # MCO C-table dates written unreadable

SSR_GME = np.array(["0101A1", "0102B1", "0401A2", "0502B1", "0801A1", "0803C2", "0804A1", "0807B2", "0901A1",
                    "1001B1", "1102A2", "1601A1", "1902B1", "2301A1", "2302B2", "2401A1"])
SSR_GME_ERROR = np.array(["9001Z0", "9002Z0"])
HAD_GHPC_ERROR = np.array(["9999", "9901"])

def gme_code(idx) -> np.ndarray:
    return SSR_GME[np.asarray(idx)]


def ghpc_code(num) -> np.ndarray:
    num = np.asarray(num)
    return np.char.zfill(num.astype(str), 4) if num.size else np.zeros(0, dtype="U4")


ANOMALY_RATES = {ROLE_CHAINING: 0.02, ROLE_PLACEHOLDER: 0.006, ROLE_ERROR: 0.006, ROLE_GHS9999: 0.005}


@dataclass
class Pmsi:
    stays: Cols
    das: Cols  # associated diagnoses: stay, icd, week
    acts: Cols  # CCAM acts: stay, ccam, delay (days from stay start), week
    um: Cols  # MCO medical units: stay, ord, dur
    med: Cols  # MCO expensive drugs: stay, ucd, nbr (x1000), price (cents per unit), delay
    dmip: Cols  # MCO implantable devices: stay, lpp, nbr, price (cents per unit), delay
    counts: dict


def _pick(rng, n, weights):
    w = np.asarray(weights, dtype=float)
    return rng.choice(len(w), size=n, p=w / w.sum())


def _pick_k(rng_order, elig, taken, k) -> np.ndarray:
    """The first k eligible, not yet taken, rows in `rng_order`; marks them taken."""
    cand = rng_order[elig[rng_order] & ~taken[rng_order]][:k]
    taken[cand] = True
    return cand


def _k(rate: float, pool: int) -> int:
    return max(1, int(round(rate * pool))) if pool else 0


def build(rng: np.random.Generator, period: Period, p: Patients, codes: Codes, ex, clinic: Cols) -> Pmsi:
    """`clinic`: the world DCIR private clinic lines (pid, dtd, dtf, etab, line), one MCO stay each."""
    life_end = p.life_end(period)
    icd_w = np.where(codes.icd_common, 8.0, 1.0)
    icd_w /= icd_w.sum()
    fin_src = codes.finess_sources
    chu_legal = np.flatnonzero(codes.finess_kind == "legal")
    has_src = {s: np.char.find(fin_src.astype(str), s) >= 0 for s in SOURCES}
    ordinary = {s: np.flatnonzero((codes.finess_kind == "ordinary") & has_src[s]) for s in SOURCES}
    # MCO stays other than the private clinics' are at public establishments; RIP at ordinary public ones
    for s in ("MCO", "RIP"):
        ordinary[s] = ordinary[s][codes.finess_sector[ordinary[s]] == "public"]
    legal = {s: chu_legal[has_src[s][chu_legal]] for s in SOURCES}
    geo_of = {}
    for s in SOURCES:
        for li in legal[s]:
            g = codes.finess_group[li]
            geo_of[(s, li)] = np.flatnonzero((codes.finess_kind == "geo") & (codes.finess_group == g) & has_src[s])

    parts = []

    def part(src_, pid_, start_, los_, kind_, death_=False, line_=None, eta0_=None) -> Cols:
        k_ = len(pid_)
        return Cols(src=np.full(k_, src_), pid=pid_, start=start_, los=los_,
                    kind=np.asarray(kind_) if np.ndim(kind_) else np.full(k_, kind_), death_stay=np.full(k_, death_, bool),
                    dcir_line=np.full(k_, -1) if line_ is None else line_, eta0=np.full(k_, -1) if eta0_ is None else eta0_)
    # ------------------------------------------------------------------ MCO ordinary stays
    pband = np.array([0.3, 0.05, 0.08, 0.12, 0.2, 0.3])[ex.band] * ex.length / 365.25
    has = rng.random(len(pband)) < pband
    cnt = np.where(has, 1 + rng.poisson(0.35, len(pband)), 0)
    row = np.repeat(np.arange(len(cnt)), cnt)
    pid = ex.pid[row]
    start = ex.start[row] + np.floor(rng.random(len(row)) * ex.length[row]).astype(np.int64)
    kind = np.array(["med", "surg", "ambu"])[_pick(rng, len(row), [0.55, 0.15, 0.30])]
    los = np.select([kind == "ambu", kind == "med"], [0, 1 + rng.geometric(0.2, len(row))], 2 + rng.geometric(0.25, len(row)))
    parts.append(part(MCO, pid, start, los, kind))
    # séances: chemotherapy / radiotherapy for cancer ALDs, dialysis for a few elderly
    sea_p = np.where(ex.ald30, 0.25, 0.0) + np.where(ex.band >= 4, 0.002, 0.0)
    k_sea = np.where(rng.random(len(sea_p)) < sea_p * ex.length / 365.25, rng.integers(3, 13, len(sea_p)), 0)
    row = np.repeat(np.arange(len(k_sea)), k_sea)
    start = ex.start[row] + np.floor(rng.random(len(row)) * ex.length[row]).astype(np.int64)
    parts.append(part(MCO, ex.pid[row], start, np.zeros(len(row), np.int64), "seance"))
    # death stays: end on the PMSI death date, SOR_MOD = 9
    dpid = np.flatnonzero(p.death_src["PMSI"] != NULL_DAY)
    dend = p.death_src["PMSI"][dpid]
    dlos = rng.integers(1, 16, len(dpid))
    dstart = np.maximum(dend - dlos, np.maximum(p.birth[dpid], period.start))
    parts.append(part(MCO, dpid, dstart, dend - dstart, "med", death_=True))
    # private clinic stays: one per world DCIR clinic line, same dates (never after the death)
    ck = np.where(rng.random(clinic.n) < 0.8, "med", "surg")
    parts.append(part(MCO, clinic["pid"], clinic["dtd"], clinic["dtf"] - clinic["dtd"], ck, line_=clinic["line"],
                      eta0_=clinic["etab"]))
    # ------------------------------------------------------------------ SSR and HAD
    for src, rates, lo, hi in ((SSR, [0, 0.003, 0.005, 0.01, 0.03, 0.07], 7, 60), (HAD, [0, 0.001, 0.001, 0.004, 0.01, 0.025], 5, 90)):
        pr = np.array(rates)[ex.band] * ex.length / 365.25
        has = rng.random(len(pr)) < pr
        row = np.flatnonzero(has)
        start = ex.start[row] + np.floor(rng.random(len(row)) * ex.length[row]).astype(np.int64)
        parts.append(part(src, ex.pid[row], start, rng.integers(lo, hi + 1, len(row)), "ssr" if src == SSR else "had"))
    # RIP (psychiatry): ~0.4 % of the patients aged 15+ a year (at least 3 stays a year), 3-45 days
    age_mid = age_years(p.birth[ex.pid], (period.year_start(ex.year) + period.year_end(ex.year)) // 2)
    pr = np.where((age_mid >= 15) & (ex.length > 0), 0.004 * ex.length / 365.25, 0.0)
    score = rng.random(len(pr)) / np.maximum(pr, 1e-12)
    has = score < 1.0
    for y in period.years:  # a few iterations (years), vectorised inside
        m = np.flatnonzero((ex.year == y) & (pr > 0))
        if len(m) and has[m].sum() < 3:
            has[m[np.argsort(score[m], kind="stable")[:3]]] = True
    row = np.flatnonzero(has)
    start = ex.start[row] + np.floor(rng.random(len(row)) * ex.length[row]).astype(np.int64)
    parts.append(part(RIP, ex.pid[row], start, rng.integers(3, 46, len(row)), "rip"))
    st = Cols.concat(parts)
    private = st["eta0"] >= 0
    # clip to life and period: a stay never ends after the death (the death stay ends on the PMSI date)
    limit = np.where(st["death_stay"], np.iinfo(np.int64).max, np.minimum(life_end[st["pid"]], period.end))
    st["end"] = np.minimum(st["start"] + st["los"], limit)
    st["end"] = np.where(st["death_stay"], st["start"] + st["los"], st["end"])
    if np.any(st["end"][private] != (st["start"] + st["los"])[private]):
        raise AssertionError("a private clinic stay would not keep the dates of its DCIR line")
    st["los"] = st["end"] - st["start"]
    S = st.n
    st["year"] = ymd(st["end"])[0]
    src = st["src"]

    # establishment: 25 % of MCO stays at AP-HP / AP-HM / HCL (legal entity, or from 2018 a site)
    eta = np.empty(S, dtype=np.int64)
    chu = (rng.random(S) < np.where(src == MCO, 0.25, 0.2)) & ~private & (src != RIP)
    for s_i, s in enumerate(SOURCES):
        m = src == s_i
        ordi = ordinary[s]
        eta[m] = ordi[rng.integers(0, len(ordi), m.sum())]
        mc = m & chu
        eta[mc] = legal[s][rng.integers(0, len(legal[s]), mc.sum())]
    eta[private] = st["eta0"][private]
    geo_ok = chu & (st["year"] > GEO_DUPLICATE_LAST_YEAR) & (rng.random(S) < 0.4)
    for (s, li), geos in geo_of.items():
        m = geo_ok & (src == SOURCES.index(s)) & (eta == li)
        if len(geos) and m.any():
            eta[m] = geos[rng.integers(0, len(geos), m.sum())]
    st["eta"] = eta
    st["geo_kept"] = geo_ok & (codes.finess_kind[eta] == "geo")

    # groups: GHM (MCO) by kind, GME (SSR), GHPC (HAD)
    ghm = np.full(S, -1)
    for k in ("med", "surg", "ambu", "seance"):
        m = st["kind"] == k
        cand = np.flatnonzero(codes.ghm_kind == k)
        ghm[m] = cand[rng.integers(0, len(cand), m.sum())]
    st["ghm"] = ghm
    st["ghs"] = np.where(ghm >= 0, codes.ghm_ghs[np.maximum(ghm, 0)], 0)
    st["gme"] = rng.integers(0, len(SSR_GME), S)
    st["ghpc"] = rng.integers(1, 311, S)
    st["pec"] = rng.integers(0, len(codes.had_pec), S)
    # diagnoses
    st["dp"] = rng.choice(len(codes.icd), size=S, p=icd_w)
    f_codes = np.flatnonzero(np.char.startswith(codes.icd, "F"))
    if len(f_codes):
        rip = np.flatnonzero(src == RIP)
        st["dp"][rip] = f_codes[rng.integers(0, len(f_codes), len(rip))]
    st["dr"] = np.where((src == MCO) & (rng.random(S) < 0.2), rng.choice(len(codes.icd), size=S, p=icd_w), -1)
    st["etl"] = rng.choice(len(codes.icd), size=S, p=icd_w)  # SSR ETL_AFF
    z50 = np.flatnonzero(np.char.startswith(codes.icd, "Z50"))
    st["fp"] = z50[rng.integers(0, len(z50), S)] if len(z50) else st["dp"]
    # entry / exit modes
    u = rng.random(S)
    st["ent_mod"] = np.where(src == SSR, np.where(u < 0.6, "7", "8"), np.where(u < 0.88, "8", np.where(u < 0.97, "7", "6")))
    st["ent_prv"] = np.select([st["ent_mod"] == "7", st["ent_mod"] == "6", (src == MCO) & (rng.random(S) < 0.3)], ["1", "1", "5"], "")
    v = rng.random(S)
    st["sor_mod"] = np.where(st["death_stay"], "9", np.where(v < 0.88, "8", np.where(v < 0.97, "7", "6")))
    st["sor_des"] = np.where(np.isin(st["sor_mod"], ["6", "7"]), np.where(rng.random(S) < 0.6, "2", "1"), "")
    st["role"] = np.zeros(S, dtype=np.int64)
    st["chain_col"] = np.full(S, -1)
    st["sej_num"] = rng.integers(1, 99999, S)

    # sub-tables
    n_das = np.where(st["kind"] == "seance", rng.integers(0, 2, S), rng.poisson(1.6, S))
    n_das = np.where(src == RIP, 0, np.minimum(n_das, 6))  # RIP diagnoses are not delivered
    das_stay = np.repeat(np.arange(S), n_das)
    das = Cols(stay=das_stay, icd=rng.choice(len(codes.icd), size=len(das_stay), p=icd_w))
    # distinct codes per stay, none equal to the stay's DP / DR (SSR: MOR_PRP / ETL_AFF)
    keyd = das["stay"] * 100000 + das["icd"]
    _, first = np.unique(keyd, return_index=True)
    das = das.take(np.sort(first))
    ok = (das["icd"] != st["dp"][das["stay"]]) & (das["icd"] != st["dr"][das["stay"]]) & (das["icd"] != st["etl"][das["stay"]])
    das = das.take(np.flatnonzero(ok))
    nweeks = np.where(src == SSR, st["los"] // 7 + 1, 1)
    st["weeks"] = nweeks
    das["week"] = (rng.random(das.n) * nweeks[das["stay"]]).astype(np.int64)

    n_act = np.select([st["kind"] == "surg", st["kind"] == "ambu", st["kind"] == "med", src == SSR],
                      [rng.integers(1, 4, S), np.ones(S, np.int64), rng.integers(0, 3, S), rng.integers(0, 3, S)], 0)
    act_stay = np.repeat(np.arange(S), n_act)
    adc = np.flatnonzero(codes.ccam_rgt == "ADC")
    atm = np.flatnonzero(np.isin(codes.ccam_rgt, ["ATM", "ADI"]))
    surg = st["kind"][act_stay] == "surg"
    acode = np.where(surg, adc[rng.integers(0, len(adc), len(act_stay))], atm[rng.integers(0, len(atm), len(act_stay))])
    delay = np.floor(rng.random(len(act_stay)) * (st["los"][act_stay] + 1)).astype(np.int64)
    acts = Cols(stay=act_stay, ccam=acode, delay=delay, week=np.minimum(delay // 7, nweeks[act_stay] - 1))

    mco = np.flatnonzero(src == MCO)
    two = rng.random(len(mco)) < 0.2
    n_um = np.where(two & (st["los"][mco] >= 2), 2, 1)
    um_stay = np.repeat(mco, n_um)
    first_um = np.r_[True, um_stay[1:] != um_stay[:-1]] if len(um_stay) else np.zeros(0, bool)
    um_ord = np.where(first_um, 1, 2)
    split = np.floor(rng.random(len(um_stay)) * st["los"][um_stay]).astype(np.int64)
    los_u = st["los"][um_stay]
    part1 = np.where(n_um[np.searchsorted(mco, um_stay)] == 2, np.maximum(split, 1), los_u)
    dur = np.where(um_ord == 1, part1, los_u - part1)
    um = Cols(stay=um_stay, ord=um_ord, dur=dur)

    public = codes.finess_sector[eta] == "public"
    chemo = (st["kind"] == "seance") & np.isin(codes.ghm[np.maximum(st["ghm"], 0)], ["28Z07Z", "28Z17Z"])
    med_sel = np.flatnonzero((chemo | ((src == MCO) & (st["kind"] != "seance") & (rng.random(S) < 0.03))) & public)
    # ADM_NBR (x1000) in halves, unit price in whole euros: ADM_NBR_PRI = price x ADM_NBR is exact in cents
    med = Cols(stay=med_sel, ucd=rng.integers(0, len(codes.ucd), len(med_sel)),
               nbr=rng.choice([500, 1000, 1500, 2000, 3000], size=len(med_sel)),
               price=rng.integers(50, 4001, len(med_sel)) * 100,
               delay=np.floor(rng.random(len(med_sel)) * (st["los"][med_sel] + 1)).astype(np.int64))
    # implantable devices (T_MCOaaDMIP): 15 % of the public surgical stays, 1-2 distinct LPP codes
    surg_pub = np.flatnonzero((src == MCO) & (st["kind"] == "surg") & public)
    dm_sel = np.sort(surg_pub[rng.permutation(len(surg_pub))[:_k(0.15, len(surg_pub))]])
    dm_stay = np.repeat(dm_sel, rng.integers(1, 3, len(dm_sel)))
    dmip = Cols(stay=dm_stay, lpp=rng.integers(0, len(codes.lpp), len(dm_stay)))
    dmip = dmip.take(first_of_groups(dmip["stay"], dmip["lpp"]))
    dmip["nbr"] = rng.integers(1, 3, dmip.n)
    dmip["price"] = rng.integers(200, 3001, dmip.n) * 100
    dmip["delay"] = np.floor(rng.random(dmip.n) * (st["los"][dmip["stay"]] + 1)).astype(np.int64)

    # ------------------------------------------------------------------ anomalies (from the pool)
    counts = {}
    order = rng.permutation(S)
    taken = st["death_stay"].copy()
    role = st["role"]
    for s_i in range(len(SOURCES)):
        pool = src == s_i
        npool = int(pool.sum())
        for r, rate in ANOMALY_RATES.items():
            if (r == ROLE_GHS9999 and s_i != MCO) or (r == ROLE_ERROR and s_i == RIP):
                continue
            k = max(1, int(round(rate * npool))) if npool >= 3 else 0
            elig = pool & ~taken
            if r in (ROLE_ERROR, ROLE_GHS9999):
                elig &= st["kind"] != "seance"
            cand = order[elig[order]][:k]
            taken[cand] = True
            role[cand] = r
    st["role"] = role
    ch = np.flatnonzero(role == ROLE_CHAINING)
    st["chain_col"][ch] = rng.integers(0, len(CHAINING_COLUMNS), len(ch))
    err = np.flatnonzero(role == ROLE_ERROR)
    errghm = np.flatnonzero(codes.ghm_kind == "error")
    st["ghm"][err] = errghm[rng.integers(0, len(errghm), len(err))]
    st["ghs"][err] = 0
    st["ghs"][role == ROLE_GHS9999] = 9999
    st["err_code"] = np.zeros(S, dtype=np.int64)
    st["err_code"][err] = rng.integers(0, 2, len(err))
    st["copy_of"] = np.full(S, -1)
    st["reason"] = np.full(S, None, dtype=object)
    _costs(rng, st, public, codes)

    # geographic duplicates (<= 2017): every world stay of AP-HP / AP-HM / HCL sent again under a site
    dup = np.flatnonzero((role == ROLE_WORLD) & np.isin(st["eta"], chu_legal) & (st["year"] <= GEO_DUPLICATE_LAST_YEAR))
    copies = st.take(dup)
    ceta = copies["eta"].copy()
    for (s, li), geos in geo_of.items():
        m = (copies["src"] == SOURCES.index(s)) & (copies["eta"] == li)
        if m.any():
            ceta[m] = geos[rng.integers(0, len(geos), m.sum())]
    copies["eta"] = ceta
    copies["role"] = np.full(copies.n, ROLE_GEO_COPY)
    copies["copy_of"] = dup
    # malformed stays: copies (B and C rows only) of world stays, per year and file
    k = 1 + p.n // 4000
    mal_src, mal_reason = [], []
    for y in period.years:
        for s_i, reasons in ((MCO, ["B:wrong_column_count", "C:wrong_column_count"]),
                             (SSR, ["C:wrong_column_count"])):
            pool = np.flatnonzero((role == ROLE_WORLD) & (src == s_i) & (st["year"] == y))
            want = reasons * k
            if len(pool) == 0:
                continue
            mal_src.append(pool[rng.integers(0, len(pool), len(want))])
            mal_reason += want
    mal_src = np.concatenate(mal_src) if mal_src else np.zeros(0, np.int64)
    mal = st.take(mal_src)
    mal["role"] = np.full(mal.n, ROLE_MALFORMED)
    mal["copy_of"] = mal_src
    mal["reason"] = np.array(mal_reason, dtype=object)
    # unreadable stay dates of world MCO stays: the cell is nulled at ingest (a stay date is not a rule
    # column) and RULES.md's fallback date gives the stay the same start or end (ENT_DAT and SOR_DAT
    # hold the same dates as EXE_SOI_DTD/EXE_SOI_DTF); evenly spaced, so no random draw is consumed
    for y in period.years:
        pool = np.flatnonzero((role == ROLE_WORLD) & (src == MCO) & (st["year"] == y))
        marks = [f"C:nulled:bad_date:{c}" for c in NULLED_STAY_DATES] * k
        if len(pool) >= 2 * len(marks):
            picked = pool[np.linspace(0, len(pool) - 1, len(marks)).astype(np.int64)]
            st["reason"][picked] = np.array(marks, dtype=object)

    base_n = S
    stays = Cols.concat([st, copies, mal])
    # sub-table rows of the geographic copies
    def copy_sub(t: Cols) -> Cols:
        m = np.isin(t["stay"], dup)
        sub = t.take(np.flatnonzero(m))
        pos = np.searchsorted(dup, sub["stay"])
        sub["stay"] = base_n + pos
        return Cols.concat([t, sub])
    das, acts, um, med, dmip = copy_sub(das), copy_sub(acts), copy_sub(um), copy_sub(med), copy_sub(dmip)

    # identifiers: RSA_NUM / RHA_NUM / RHAD_NUM unique per source (a geographic copy keeps its number)
    T = stays.n
    ident = np.empty(T, dtype=np.int64)
    for s_i, width in enumerate(ID_WIDTH):
        m = np.flatnonzero(stays["src"] == s_i)
        hi = min(10**width - 1, 10**7)
        ident[m] = rng.choice(hi, size=len(m), replace=False) + 1
    cp = stays["role"] == ROLE_GEO_COPY
    ident[cp] = ident[stays["copy_of"][cp]]
    stays["ident"] = ident

    counts = {
        "geographic_finess_kept": {SOURCES[s]: int(np.sum((stays["role"] == ROLE_WORLD) & stays["geo_kept"] & (stays["src"] == s)))
                                   for s in range(3)},
    }
    return Pmsi(stays=stays, das=das, acts=acts, um=um, med=med, dmip=dmip, counts=counts)


COST_RATES = {"typ_gen_rsa": 0.01, "ent_mod_0": 0.01, "sor_mod_0": 0.01, "valo_0": 0.02, "valo_empty": 0.01}
NOT_BILLABLE_RATE = 0.08
PER_DAY_EUR = {SSR: (200, 450), HAD: (200, 450), RIP: (250, 600)}


def _costs(rng, st: Cols, public: np.ndarray, codes: Codes) -> None:
    """Cost attributes of the stays (in place), drawn after the anomalies so that their shares are of
    the world stays; the copies made afterwards inherit them.

    MCO at a public establishment: `valo` (1 valued, 0 VALO '0', 2 VALO empty; -1 private: no VALO
    row), `mnt_ghs` / `mnt_tot` (cents, 0 when not valued), `typ_gen` (TYP_GEN_RSA), and ENT_MOD /
    SOR_MOD '0' (inter-establishment service). Disjoint sets of world stays, never a death stay.
    SSR / HAD / RIP: `fac` (SEJ_FAC_AM / FAC_SEJ_AM 1 or 0), `stc_base` (REM_BAS_MNT), `stc_tot`
    (TOT_MNT_AM), `stc_rate` (REM_TAU)."""
    S = st.n
    src, kind = st["src"], st["kind"]
    mco_pub = (src == MCO) & public
    world = (st["role"] == ROLE_WORLD) & mco_pub & ~st["death_stay"]
    order = rng.permutation(S)
    taken = ~world
    sets = {}
    for name, rate in COST_RATES.items():
        elig = world & (st["year"] >= 2015) if name == "typ_gen_rsa" else world
        sets[name] = _pick_k(order, elig, taken, _k(rate, int(elig.sum())))
    st["typ_gen"] = np.zeros(S, np.int64)
    st["typ_gen"][sets["typ_gen_rsa"]] = 1
    st["ent_mod"][sets["ent_mod_0"]] = "0"
    st["ent_prv"][sets["ent_mod_0"]] = ""
    st["sor_mod"][sets["sor_mod_0"]] = "0"
    st["sor_des"][sets["sor_mod_0"]] = ""
    valo = np.where(mco_pub, VALO_VALUED, VALO_NONE)
    valo[sets["valo_0"]] = VALO_ZERO
    valo[sets["valo_empty"]] = VALO_EMPTY
    st["valo"] = valo
    nights = st["los"]
    base_eur = np.select([kind == "med", kind == "surg", kind == "ambu"],
                         [rng.integers(1500, 5001, S), rng.integers(3000, 6001, S), rng.integers(500, 1501, S)],
                         rng.integers(300, 1501, S))
    per_night = np.where(np.isin(kind, ["med", "surg"]), rng.integers(50, 301, S), 0)
    supp = np.where(rng.random(S) < 0.3, rng.integers(50, 1501, S), 0)
    ghs = (base_eur + nights * per_night) * 100
    valued = valo == VALO_VALUED
    st["mnt_ghs"] = np.where(valued, ghs, 0)
    st["mnt_tot"] = np.where(valued, ghs + supp * 100, 0)
    # SSR / HAD / RIP billing
    fac = np.ones(S, np.int64)
    taken = np.ones(S, bool)
    for s_i in (SSR, HAD, RIP):
        elig = (src == s_i) & (st["role"] == ROLE_WORLD)
        taken[elig] = False
        npool = int(elig.sum())
        fac[_pick_k(order, elig, taken, _k(NOT_BILLABLE_RATE, npool) if npool >= 2 else 0)] = 0  # one billable at least
    days = st["los"] + 1
    lo = np.select([src == SSR, src == HAD], [PER_DAY_EUR[SSR][0], PER_DAY_EUR[HAD][0]], PER_DAY_EUR[RIP][0])
    hi = np.select([src == SSR, src == HAD], [PER_DAY_EUR[SSR][1], PER_DAY_EUR[HAD][1]], PER_DAY_EUR[RIP][1])
    per_day = lo + np.floor(rng.random(S) * (hi - lo + 1)).astype(np.int64)
    rate = np.where(rng.random(S) < 0.4, 100, 80)
    billed = (fac == 1) & (src != MCO)
    st["fac"] = np.where(src != MCO, fac, -1)
    st["stc_base"] = np.where(billed, per_day * days * 100, 0)
    st["stc_tot"] = np.where(billed, per_day * days * rate, 0)  # = base x rate / 100, whole cents
    st["stc_rate"] = rate
