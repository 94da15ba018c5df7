"""ACE: outpatient visits (actes et consultations externes) of public hospitals, then planted anomalies.

A visit is one T_MCOaaCSTC row (patient chaining, dates), 1-2 T_MCOaaFBSTC rows (NGAP acts) and one
T_MCOaaVALOACE row (valuation), in the files of the visit's year, keyed by (ETA_NUM, SEQ_NUM).

Visit `role`:
  0 world visit (kept by cleaning)
  1 bad chaining code (one of NIR_RET, NAI_RET, SEX_RET, IAS_RET, ENT_DAT_RET is '1')
  2 placeholder NIR_ANO_17
  5 copy of a world visit of the AP-HP / AP-HM legal entity under one of the group's geographic FINESS
    (years <= 2017, all three tables, same SEQ_NUM); HCL visits are never duplicated
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .codes import Codes
from .fmt import ymd
from .pmsi import GEO_DUPLICATE_LAST_YEAR, ROLE_CHAINING, ROLE_GEO_COPY, ROLE_PLACEHOLDER, ROLE_WORLD, _k, _pick_k
from .table import Cols
from .world import Patients, Period

CHAINING_COLUMNS = ("NIR_RET", "NAI_RET", "SEX_RET", "IAS_RET", "ENT_DAT_RET")
ACT_CODES = np.array(["CS", "C", "G", "CNP"])
ACT_WEIGHTS = np.array([0.6, 0.15, 0.1, 0.15])
ACT_PRICE = np.array([3000, 2500, 2500, 3900])  # cents: one act (ACT_COE 1)
VALO_VALUED, VALO_ZERO, VALO_EMPTY = 1, 0, 2  # T_MCOaaVALOACE.valo '1', '0', empty
RATES = {ROLE_CHAINING: 0.02, ROLE_PLACEHOLDER: 0.006}
NOT_VALUED_RATE = 0.03
DUPLICATED_GROUPS = ("APHP", "APHM")  # HCL's outpatient visits were not duplicated (RULES.md)


@dataclass
class Ace:
    visits: Cols  # pid, date, year, eta, seq, role, chain_col, copy_of, rate, valo, mnt_br, mnt_remb
    acts: Cols  # visit, code (index into ACT_CODES), price (cents)


def build(rng: np.random.Generator, period: Period, p: Patients, codes: Codes, ex) -> Ace:
    has_mco = np.char.find(codes.finess_sources.astype(str), "MCO") >= 0
    public = codes.finess_sector == "public"
    ordinary = np.flatnonzero((codes.finess_kind == "ordinary") & public & has_mco)
    legal = np.flatnonzero((codes.finess_kind == "legal") & has_mco)
    geo_of = {li: np.flatnonzero((codes.finess_kind == "geo") & (codes.finess_group == codes.finess_group[li]) & has_mco)
              for li in legal}

    # ~15 % of the patients a year, 1-3 visits on days of the exposure
    has = rng.random(len(ex.pid)) < 0.15 * ex.length / 365.25
    cnt = np.where(has, rng.integers(1, 4, len(ex.pid)), 0)
    row = np.repeat(np.arange(len(cnt)), cnt)
    V = len(row)
    date = ex.start[row] + np.floor(rng.random(V) * ex.length[row]).astype(np.int64)
    year = ymd(date)[0]
    # public hospital: an ordinary one, or (25 %) AP-HP / AP-HM / HCL; sites as the PMSI stays
    eta = ordinary[rng.integers(0, len(ordinary), V)]
    chu = rng.random(V) < 0.25
    eta[chu] = legal[rng.integers(0, len(legal), int(chu.sum()))]
    u = rng.random(V)
    for li, geos in geo_of.items():
        hcl = codes.finess_group[li] == "HCL"
        # from 2018 on, 40 % under a site (kept); before, HCL (never duplicated) writes 30 % under a site
        m = (eta == li) & (((year > GEO_DUPLICATE_LAST_YEAR) & (u < 0.4)) | (hcl & (year <= GEO_DUPLICATE_LAST_YEAR) & (u < 0.3)))
        if len(geos) and m.any():
            eta[m] = geos[rng.integers(0, len(geos), int(m.sum()))]
    rate = np.where(ex.ald[row] & (rng.random(V) < 0.5), 100, 70)
    v = Cols(pid=ex.pid[row], date=date, year=year, eta=eta, rate=rate, role=np.zeros(V, np.int64),
             chain_col=np.full(V, -1), copy_of=np.full(V, -1))

    # acts: 1-2 distinct NGAP codes per visit
    n_act = rng.integers(1, 3, V)
    a_visit = np.repeat(np.arange(V), n_act)
    first = np.r_[True, a_visit[1:] != a_visit[:-1]] if len(a_visit) else np.zeros(0, bool)
    c1 = rng.choice(len(ACT_CODES), size=V, p=ACT_WEIGHTS / ACT_WEIGHTS.sum())
    shift = rng.integers(1, len(ACT_CODES), len(a_visit))
    code = np.where(first, c1[a_visit], (c1[a_visit] + shift) % len(ACT_CODES))
    acts = Cols(visit=a_visit, code=code, price=ACT_PRICE[code])
    br = np.bincount(a_visit, weights=acts["price"], minlength=V).astype(np.int64)

    # anomalies (disjoint), then valuation of the world visits
    order = rng.permutation(V)
    taken = np.zeros(V, bool)
    role = v["role"]
    for r, share in RATES.items():
        role[_pick_k(order, np.ones(V, bool), taken, _k(share, V) if V >= 3 else 0)] = r
    ch = np.flatnonzero(role == ROLE_CHAINING)
    v["chain_col"][ch] = rng.integers(0, len(CHAINING_COLUMNS), len(ch))
    world = role == ROLE_WORLD
    nv = _pick_k(order, world, taken, _k(NOT_VALUED_RATE, int(world.sum())))
    valo = np.full(V, VALO_VALUED)
    valo[nv] = np.where(np.arange(len(nv)) % 2 == 0, VALO_ZERO, VALO_EMPTY)
    valued = valo == VALO_VALUED
    v["valo"] = valo
    v["mnt_br"] = np.where(valued, br, 0)
    v["mnt_remb"] = np.where(valued, br * rate // 100, 0)  # prices are whole euros: exact

    # SEQ_NUM: unique over the delivery (hence per year and FINESS); a copy keeps its visit's number
    v["seq"] = rng.choice(10**9 - 1, size=V, replace=False) + 1

    # geographic copies (<= 2017) of the AP-HP / AP-HM legal-entity world visits
    dup = np.flatnonzero((role == ROLE_WORLD) & (year <= GEO_DUPLICATE_LAST_YEAR)
                         & np.isin(eta, [li for li in legal if codes.finess_group[li] in DUPLICATED_GROUPS]))
    copies = v.take(dup)
    ceta = copies["eta"].copy()
    for li, geos in geo_of.items():
        m = copies["eta"] == li
        if m.any():
            ceta[m] = geos[rng.integers(0, len(geos), int(m.sum()))]
    copies["eta"] = ceta
    copies["role"] = np.full(copies.n, ROLE_GEO_COPY)
    copies["copy_of"] = dup
    am = np.isin(acts["visit"], dup)
    cacts = acts.take(np.flatnonzero(am))
    cacts["visit"] = V + np.searchsorted(dup, cacts["visit"])
    return Ace(visits=Cols.concat([v, copies]), acts=Cols.concat([acts, cacts]))
