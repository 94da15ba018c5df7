"""DCIR: outpatient care of the world as ER_PRS_F lines with their detail rows, then planted anomalies.

Vocabulary
  line     one ER_PRS_F row (a prestation); `role` says what it is:
             0 world line (kept by cleaning; partial régularisation originals included)
             1 DPN_QLF = 71, 2 PRS_DPN_QLP = 71, 3 BSE_PRS_NAT = 0, 4 ER_ETE_F.ETE_IND_TAA = 1
             5 fully cancelled original, 6 its cancelling line, 7 cancelling line of a partial régularisation
             8 malformed (quarantined by ingest)
           Private clinic stays (CAT_ETAB) and medical transport (CAT_TRANSPORT) are never planted: all
           their lines are world lines, and each clinic line is also a PMSI MCO stay (pmsi.py).
  décompte (dct) lines processed together: they share FLX_* keys, ORG_CLE_NUM and DCT_ORD_NUM and are
           numbered by PRS_ORD_NUM.
  detail   ER_PHA_F / ER_BIO_F / ER_CAM_F / ER_TIP_F / ER_UCD_F / ER_ETE_F rows, attached to a line.
  G key    régularisation grouping key (patient, EXE_SOI_DTD, EXE_SOI_DTF, PRS_NAT_REF, PFS_EXE_NUM,
           ETB_PRE_FIN, CPL_MAJ_TOP, CPL_AFF_COD): unique among lines other than cancelling lines.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from .codes import Codes
from .drugs import Drugs
from .fmt import NULL_DAY, add_months, day, month_start, ymd
from .table import Cols, first_of_groups, group_ids
from .world import Patients, Period, Providers, age_years

CAT_CONSULT, CAT_MAJ, CAT_PF, CAT_PHARMA, CAT_BIO, CAT_NURSE, CAT_KINE, CAT_CCAM, CAT_DEVICE, CAT_ETAB, CAT_UCD, CAT_TRANSPORT = range(12)

ROLE_WORLD, ROLE_DPN71, ROLE_STRICT, ROLE_BSE0, ROLE_TAA1, ROLE_FULL_ORIG, ROLE_FULL_CANCEL, ROLE_PARTIAL_CANCEL, ROLE_MALFORMED = range(9)

CONSULT_NATURES = (1098, 1110, 1111, 1112, 1113, 1114, 1115, 1191, 1192)
CLINIC_NATURE = 2211  # FRAIS DE SEJOUR: every private clinic stay line
TRANSPORT_NATURES = (4212, 4213, 4214)  # ambulances, VSL, taxis
TRANSPORT_SHARES = (0.3, 0.3, 0.4)
CCAM_NATURE = {"ADC": 1321, "ACO": 1322, "ADE": 1324, "ADI": 1351, "ATM": 1352}
DETAILS = ("PHA", "BIO", "CAM", "TIP", "UCD", "ETE")

TELECONSULT_START = day("2018-09-15")
G_START = day("2017-05-01")
COVID = (day("2020-03-15"), day("2021-12-31"))

# Age bands: <2, 2-17, 18-39, 40-59, 60-74, 75+ ; expected events per year.
RATES = {
    "gp": [6.0, 3.0, 3.0, 4.0, 5.5, 7.0],
    "spe": [1.0, 0.8, 1.2, 1.6, 2.2, 2.4],
    "pharma": [6.0, 4.0, 5.0, 8.0, 12.0, 15.0],
    "bio": [0.3, 0.4, 1.0, 1.8, 3.0, 4.0],
    "nurse": [0.2, 0.1, 0.3, 0.6, 1.8, 6.0],
    "kine": [0.1, 0.3, 0.6, 0.8, 1.0, 1.5],
    "ccam": [0.3, 0.3, 0.8, 1.2, 1.8, 2.0],
    "device": [0.05, 0.05, 0.1, 0.3, 0.6, 1.2],
    "etab": [0.02, 0.02, 0.04, 0.06, 0.08, 0.1],
}


def _band(age):
    return np.select([age < 2, age < 18, age < 40, age < 60, age < 75], [0, 1, 2, 3, 4], 5)


@dataclass
class Exposure:
    pid: np.ndarray  # (n*Y,) patient of each patient-year
    year: np.ndarray
    start: np.ndarray
    length: np.ndarray  # days alive in the year within the period (0 = none)
    band: np.ndarray
    ald: np.ndarray  # has an ALD open during the year
    ald30: np.ndarray  # cancer ALD open during the year
    cmu: np.ndarray


def exposure(p: Patients, period: Period, codes: Codes) -> Exposure:
    years = period.years
    Y = len(years)
    pid = np.repeat(np.arange(p.n), Y)
    yr = np.tile(years, p.n)
    ys, ye = period.year_start(yr), period.year_end(yr)
    start = np.maximum(ys, p.birth[pid])
    end = np.minimum(ye, p.life_end(period)[pid])
    length = np.maximum(end - start + 1, 0)
    mid = (ys + ye) // 2
    band = _band(age_years(p.birth[pid], mid))
    # ALD open during the year
    ald_open = np.zeros(p.n * Y, dtype=bool)
    ald30 = np.zeros(p.n * Y, dtype=bool)
    end_ald = np.where(p.ald_end == NULL_DAY, np.iinfo(np.int64).max, p.ald_end)
    for i, y in enumerate(years):
        act = (p.ald_start <= period.year_end(y)) & (end_ald >= period.year_start(y))
        rows = p.ald_pid[act] * Y + i
        ald_open[rows] = True
        ald30[rows[codes.icd_ald[p.ald_icd[act]] == 30]] = True
    return Exposure(pid=pid, year=yr, start=start, length=length, band=band, ald=ald_open, ald30=ald30,
                    cmu=p.cmu.reshape(-1))


def draw(rng, ex: Exposure, rate: np.ndarray):
    """Poisson number of events per patient-year, dates uniform over the exposure. -> (pid, date, row)."""
    lam = rate * ex.length / 365.25
    cnt = rng.poisson(lam)
    row = np.repeat(np.arange(len(cnt)), cnt)
    date = ex.start[row] + np.floor(rng.random(len(row)) * ex.length[row]).astype(np.int64)
    return ex.pid[row], date, row


def _rate(ex: Exposure, name: str, ald_mult=1.0, cmu_mult=1.0) -> np.ndarray:
    r = np.asarray(RATES[name])[ex.band]
    return r * np.where(ex.ald, ald_mult, 1.0) * np.where(ex.cmu, cmu_mult, 1.0)


@dataclass
class Dcir:
    lines: Cols
    det: dict  # name -> Cols
    counts: dict  # planted anomaly counts
    regul: dict


_T0 = [0.0]


def _tick(label: str) -> None:
    """Section timings on stderr when SNDS_SYNTH_PROFILE is set (development aid)."""
    if os.environ.get("SNDS_SYNTH_PROFILE"):
        now = time.monotonic()
        print(f"    dcir {label:<45} {now - _T0[0]:6.2f} s", file=sys.stderr)
        _T0[0] = now


def _lines(n, **kw) -> Cols:
    base = dict(
        dtf=None, prov=-1, etab=-1, qty=1, coef=0, paid=0, base=0, reimb=0, cpl=0, rate=70, exo=0, maj=0, aff=0,
        dpn=0, presc=-1, protected=False, ppu=2, sub=0,
    )
    base.update(kw)
    if base["dtf"] is None:
        base["dtf"] = base["dtd"]
    out = {}
    for k, v in base.items():
        a = np.asarray(v)
        a = np.full(n, a) if a.ndim == 0 else a
        if a.dtype.kind in "iu":  # narrow integer types: the line table is the big one
            a = a.astype(np.int16 if k in SMALL_COLUMNS else np.int32)
        out[k] = a
    return Cols(**out)


SMALL_COLUMNS = frozenset({"cat", "maj", "aff", "dpn", "exo", "rate", "ppu", "sub"})


def build(rng: np.random.Generator, period: Period, p: Patients, prov: Providers, drugs: Drugs, codes: Codes) -> Dcir:
    _T0[0] = time.monotonic()
    ex = exposure(p, period, codes)
    life_end = p.life_end(period)
    cmu_of = lambda pid, d: p.cmu[pid, ymd(d)[0] - period.y1]  # noqa: E731
    adult = lambda pid, d: age_years(p.birth[pid], d) >= 18  # noqa: E731
    parts: list[tuple[Cols, dict]] = []  # (lines, {detail: Cols with local line index})

    # ---------------------------------------------------------------- consultations (GP, specialists)
    pid, d, row = draw(rng, ex, _rate(ex, "gp", 1.3, 1.1))
    gpidx = prov.idx["GP"]
    pv = np.where(rng.random(len(pid)) < 0.9, gpidx[p.gp[pid] % len(gpidx)], gpidx[rng.integers(0, len(gpidx), len(pid))])
    covid = (d >= COVID[0]) & (d <= COVID[1])
    tele = (d >= TELECONSULT_START) & (rng.random(len(pid)) < np.where(covid, 0.15, 0.03))
    nat = np.where(tele, 1192, np.where(d >= G_START, 1110, 1111))
    price = np.where(d >= G_START, 2500, 2300)
    gp_lines = _lines(len(pid), pid=pid, cat=CAT_CONSULT, nat=nat, dtd=d, prov=pv, base=price, paid=price, rate=70,
                      exo=np.where(ex.ald[row] & (rng.random(len(pid)) < 0.5), 41, 0))
    pid, d, row = draw(rng, ex, _rate(ex, "spe", 1.5))
    spidx = prov.idx["SPE"]
    pv = spidx[rng.integers(0, len(spidx), len(pid))]
    spe = prov.spe[pv]
    tele = (d >= TELECONSULT_START) & (rng.random(len(pid)) < np.where((d >= COVID[0]) & (d <= COVID[1]), 0.08, 0.02))
    nat = np.select([tele, np.isin(spe, [32, 33]), (spe == 3) & (rng.random(len(pid)) < 0.3), rng.random(len(pid)) < 0.01],
                    [1191, 1113, 1114, 1115], 1112)
    base = np.select([nat == 1191, nat == 1113, nat == 1114, nat == 1115], [2500, 3900, 4700, 4600], 3000)
    dep = np.where(prov.sector2[pv], rng.integers(5, 41, len(pid)) * 100, 0)
    sp_lines = _lines(len(pid), pid=pid, cat=CAT_CONSULT, nat=nat, dtd=d, prov=pv, base=base, paid=base + dep, rate=70,
                      dpn=np.where(dep > 0, 15, 0), exo=np.where(ex.ald[row] & (rng.random(len(pid)) < 0.5), 41, 0))
    cons = Cols.concat([gp_lines, sp_lines])
    cons = cons.take(first_of_groups(cons["pid"], cons["dtd"], cons["prov"], cons["nat"]))
    n = cons.n
    cons["dct"] = np.arange(n)
    # majoration lines (CPL_MAJ_TOP = 2) for 5 % of GP consultations, participation forfaitaire lines
    # (CPL_AFF_COD = 16) for 30 % of the consultations of adults without CMU-C.
    is_gp = np.isin(cons["nat"], [1110, 1111])
    mj = np.flatnonzero(is_gp & (rng.random(n) < 0.05))
    maj = cons.take(mj)
    maj["cat"], maj["maj"], maj["aff"], maj["base"], maj["paid"], maj["dpn"] = CAT_MAJ, 2, 22, 500, 500, 0
    pf_sel = np.flatnonzero(adult(cons["pid"], cons["dtd"]) & ~cmu_of(cons["pid"], cons["dtd"]) & (rng.random(n) < 0.3))
    pf = cons.take(pf_sel)
    pf["cat"], pf["aff"], pf["base"], pf["paid"], pf["dpn"], pf["exo"] = CAT_PF, 16, 0, 0, 0, 0
    parts.append((Cols.concat([cons, maj, pf]), {}))

    _tick("consultations")
    # ---------------------------------------------------------------- pharmacy
    pid, d, row = draw(rng, ex, _rate(ex, "pharma", 1.4, 1.1))
    phidx = prov.idx["PHA"]
    pv = np.where(rng.random(len(pid)) < 0.85, phidx[p.pharmacy[pid] % len(phidx)], phidx[rng.integers(0, len(phidx), len(pid))])
    keep = first_of_groups(pid, d, pv)
    pid, d, row, pv = pid[keep], d[keep], row[keep], pv[keep]
    nv = len(pid)
    # chronic treatments: 0-4 drugs per patient, more with age and ALD
    chronic_idx = np.flatnonzero(drugs.chronic)
    cw = drugs.weight[chronic_idx] / drugs.weight[chronic_idx].sum()
    age_mid = age_years(p.birth, np.full(p.n, (period.start + period.end) // 2))
    lam = np.select([age_mid < 18, age_mid < 40, age_mid < 60, age_mid < 75], [0.1, 0.3, 0.9, 1.8], 2.8)
    n_chr = np.minimum(rng.poisson(lam) + np.isin(np.arange(p.n), p.ald_pid), 4)
    chr_tab = chronic_idx[rng.choice(len(chronic_idx), size=(p.n, 4), p=cw)]
    ndrug = rng.choice([1, 2, 3, 4], size=nv, p=[0.45, 0.3, 0.17, 0.08])
    v = np.repeat(np.arange(nv), ndrug)
    vp = pid[v]
    use_chr = (n_chr[vp] > 0) & (rng.random(len(v)) < 0.65)
    dr = np.where(use_chr, chr_tab[vp, rng.integers(0, 4, len(v)) % np.maximum(n_chr[vp], 1)],
                  rng.choice(len(drugs.cip13), size=len(v), p=drugs.weight))
    keep = first_of_groups(v, dr)
    v, dr = v[keep], dr[keep]
    boxes = np.where(drugs.chronic[dr], rng.choice([1, 2, 3], size=len(v), p=[0.6, 0.25, 0.15]),
                     rng.choice([1, 2], size=len(v), p=[0.85, 0.15]))
    # one line per (visit, nature)
    line_of, nl = group_ids(v, drugs.nature[dr])
    first = np.full(nl, len(v))
    np.minimum.at(first, line_of, np.arange(len(v)))
    lv = v[first]
    lpid = pid[lv]
    exo = np.where(ex.ald[row[lv]] & (rng.random(nl) < 0.6), 41, 0)
    rate = np.where(exo > 0, 100, drugs.rate[dr[first]])
    unit_reimb = np.round(drugs.price[dr] * rate[line_of] / 100).astype(np.int64)
    qty = np.bincount(line_of, weights=boxes, minlength=nl).astype(np.int64)
    paid = np.bincount(line_of, weights=drugs.price[dr] * boxes, minlength=nl).astype(np.int64)
    reimb = np.bincount(line_of, weights=unit_reimb * boxes, minlength=nl).astype(np.int64)
    ph = _lines(nl, pid=lpid, cat=CAT_PHARMA, nat=drugs.nature[dr[first]], dtd=d[lv], prov=pv[lv], qty=qty, paid=paid,
                base=paid, reimb=reimb, rate=rate, exo=exo, presc=prov.idx["GP"][p.gp[lpid] % len(prov.idx["GP"])])
    ph["dct"] = lv
    ph["sub"] = np.bincount(line_of, minlength=nl)
    pha = Cols(line=line_of, code=dr, qty=boxes, price=drugs.price[dr])
    parts.append((ph, {"PHA": pha}))

    _tick("pharmacy")
    # ---------------------------------------------------------------- biology
    pid, d, row = draw(rng, ex, _rate(ex, "bio", 1.5))
    lbidx = prov.idx["LAB"]
    pv = lbidx[rng.integers(0, len(lbidx), len(pid))]
    keep = first_of_groups(pid, d, pv)
    pid, d, row, pv = pid[keep], d[keep], row[keep], pv[keep]
    nb = len(pid)
    bw = 1.0 / (1 + rng.permutation(len(codes.bio))) ** 1.1
    bw /= bw.sum()
    ncode = rng.choice([1, 2, 3, 4, 5, 6], size=nb, p=[0.25, 0.2, 0.2, 0.15, 0.12, 0.08])
    b = np.repeat(np.arange(nb), ncode)
    bc = rng.choice(len(codes.bio), size=len(b), p=bw)
    keep = first_of_groups(b, bc)
    b, bc = b[keep], bc[keep]
    bq = np.where(rng.random(len(b)) < 0.93, 1, 2)
    unit = np.round(codes.bio_coef[bc] * 27).astype(np.int64)  # B = 0.27 EUR
    exo = np.where(ex.ald[row] & (rng.random(nb) < 0.5), 41, 0)
    rate = np.where(exo > 0, 100, 60)
    qty = np.bincount(b, weights=bq, minlength=nb).astype(np.int64)
    base = np.bincount(b, weights=unit * bq, minlength=nb).astype(np.int64)
    coef = np.round(np.bincount(b, weights=codes.bio_coef[bc] * bq, minlength=nb) * 100).astype(np.int64)
    bio = _lines(nb, pid=pid, cat=CAT_BIO, nat=3211, dtd=d, prov=pv, qty=qty, base=base, paid=base, coef=coef, rate=rate,
                 exo=exo, presc=prov.idx["GP"][p.gp[pid] % len(prov.idx["GP"])])
    bio["dct"] = np.arange(nb)
    bio["sub"] = np.bincount(b, minlength=nb)
    biod = Cols(line=b, code=bc, qty=bq, price=unit)
    pf_sel = np.flatnonzero(adult(pid, d) & ~cmu_of(pid, d) & (rng.random(nb) < 0.3))
    pfb = bio.take(pf_sel)
    pfb["cat"], pfb["aff"], pfb["base"], pfb["paid"], pfb["coef"], pfb["exo"], pfb["sub"] = CAT_PF, 16, 0, 0, 0, 0, 0
    parts.append((Cols.concat([bio, pfb]), {"BIO": biod}))

    _tick("biology")
    # ---------------------------------------------------------------- nurses, physiotherapists
    pid, d, row = draw(rng, ex, _rate(ex, "nurse", 1.5))
    nidx = prov.idx["NUR"]
    pv = nidx[rng.integers(0, len(nidx), len(pid))]
    coef = rng.choice([1.0, 1.5, 2.0, 3.0, 4.0], size=len(pid), p=[0.35, 0.15, 0.25, 0.15, 0.1])
    base = np.round(coef * 315).astype(np.int64)
    exo = np.where(ex.ald[row] & (rng.random(len(pid)) < 0.5), 41, 0)
    nur = _lines(len(pid), pid=pid, cat=CAT_NURSE, nat=3111, dtd=d, prov=pv, base=base, paid=base,
                 coef=np.round(coef * 100).astype(np.int64), rate=np.where(exo > 0, 100, 60), exo=exo)
    # DCIR record of a death: a last nurse visit shortly before the death, processed after it.
    dsrc = np.flatnonzero(p.death_src["DCIR"] != NULL_DAY)
    fd = np.maximum(p.death[dsrc] - rng.integers(0, 6, len(dsrc)), np.maximum(p.birth[dsrc], period.start))
    fin = _lines(len(dsrc), pid=dsrc, cat=CAT_NURSE, nat=3111, dtd=fd, prov=nidx[rng.integers(0, len(nidx), len(dsrc))],
                 base=630, paid=630, coef=200, rate=60, protected=True)
    nur = Cols.concat([fin, nur])
    nur = nur.take(first_of_groups(nur["pid"], nur["dtd"], nur["prov"]))
    nur["dct"] = np.arange(nur.n)
    pid, d, row = draw(rng, ex, _rate(ex, "kine"))
    kidx = prov.idx["KIN"]
    pv = kidx[rng.integers(0, len(kidx), len(pid))]
    sess = rng.integers(1, 11, len(pid))
    dtf = np.minimum(d + (sess - 1) * 3, life_end[pid])
    base = sess * 1613
    kin = _lines(len(pid), pid=pid, cat=CAT_KINE, nat=3122, dtd=d, dtf=dtf, prov=pv, qty=sess, base=base, paid=base,
                 coef=750, rate=60)
    kin = kin.take(first_of_groups(kin["pid"], kin["dtd"], kin["dtf"], kin["prov"]))
    kin["dct"] = np.arange(kin.n)
    parts.append((nur, {}))
    parts.append((kin, {}))

    _tick("nurses and physiotherapists")
    # ---------------------------------------------------------------- CCAM acts (one ER_CAM_F row each)
    pid, d, row = draw(rng, ex, _rate(ex, "ccam", 1.3))
    rgt = np.array(["ATM", "ADI", "ADE", "ADC"])
    rgi = rng.choice(len(rgt), size=len(pid), p=[0.5, 0.3, 0.15, 0.05])
    code = np.empty(len(pid), dtype=np.int64)
    for j, r in enumerate(rgt):  # loop over 4 regroupings, vectorised inside
        cand = np.flatnonzero(codes.ccam_rgt == r)
        sel = rgi == j
        code[sel] = cand[rng.integers(0, len(cand), sel.sum())]
    nat = np.array([CCAM_NATURE[r] for r in rgt])[rgi]
    rg = rgt[rgi]
    radio = prov.idx["SPE"][np.isin(prov.spe[prov.idx["SPE"]], [6])]
    if len(radio) == 0:
        radio = prov.idx["SPE"]
    pv = np.where(np.isin(rg, ["ADI", "ADE"]), radio[rng.integers(0, len(radio), len(pid))],
                  prov.idx["SPE"][rng.integers(0, len(prov.idx["SPE"]), len(pid))])
    base = np.where(rg == "ADC", rng.integers(80, 400, len(pid)), rng.integers(20, 120, len(pid))) * 100
    cam = _lines(len(pid), pid=pid, cat=CAT_CCAM, nat=nat, dtd=d, prov=pv, base=base, paid=base, rate=70,
                 exo=np.where(ex.ald[row] & (rng.random(len(pid)) < 0.4), 41, 0))
    k = first_of_groups(cam["pid"], cam["dtd"], cam["prov"], cam["nat"])
    cam, code = cam.take(k), code[k]
    cam["dct"] = np.arange(cam.n)
    cam["sub"] = np.ones(cam.n, dtype=np.int64)
    camd = Cols(line=np.arange(cam.n), code=code, qty=np.ones(cam.n, dtype=np.int64), price=cam["base"])
    parts.append((cam, {"CAM": camd}))

    _tick("CCAM acts")
    # ---------------------------------------------------------------- medical devices (LPP, one ER_TIP_F row)
    pid, d, row = draw(rng, ex, _rate(ex, "device", 3.0))
    sup = np.concatenate([prov.idx["PHA"], prov.idx["SUP"]])
    pv = sup[rng.integers(0, len(sup), len(pid))]
    lp = rng.integers(0, len(codes.lpp), len(pid))
    q = rng.choice([1, 2, 3, 4], size=len(pid), p=[0.55, 0.25, 0.12, 0.08])
    exo = np.where(ex.ald[row] & (rng.random(len(pid)) < 0.6), 41, 0)
    rate = np.where(exo > 0, 100, 60)
    unit = codes.lpp_price_cents[lp]
    dev = _lines(len(pid), pid=pid, cat=CAT_DEVICE, nat=codes.lpp_nature[lp], dtd=d, prov=pv, qty=q, base=unit * q,
                 paid=unit * q, rate=rate, exo=exo, presc=prov.idx["GP"][p.gp[pid] % len(prov.idx["GP"])])
    k = first_of_groups(dev["pid"], dev["dtd"], dev["prov"], dev["nat"])
    dev, lp, q, unit = dev.take(k), lp[k], q[k], unit[k]
    dev["dct"] = np.arange(dev.n)
    dev["sub"] = np.ones(dev.n, dtype=np.int64)
    tip = Cols(line=np.arange(dev.n), code=lp, qty=q, price=unit)
    parts.append((dev, {"TIP": tip}))

    _tick("devices")
    # ---------------------------------------------------------------- private clinic stays (ER_ETE_F)
    pid, d, row = draw(rng, ex, _rate(ex, "etab"))
    clinics = np.flatnonzero((codes.finess_sector == "private") & (np.char.find(codes.finess_sources.astype(str), "MCO") >= 0))
    et = clinics[rng.integers(0, len(clinics), len(pid))]
    nat = np.full(len(pid), CLINIC_NATURE)
    days_ = rng.integers(1, 8, len(pid))
    dtf = np.minimum(d + days_ - 1, life_end[pid])
    days_ = dtf - d + 1
    base = days_ * rng.integers(150, 600, len(pid)) * 100
    eta = _lines(len(pid), pid=pid, cat=CAT_ETAB, nat=nat, dtd=d, dtf=dtf, etab=et, qty=days_, base=base, paid=base,
                 rate=80, ppu=2)
    k = first_of_groups(eta["pid"], eta["dtd"], eta["dtf"], eta["etab"], eta["nat"])
    eta = eta.take(k)
    eta = eta.take(_non_overlapping(eta["pid"], eta["etab"], eta["dtd"], eta["dtf"]))
    eta["dct"] = np.arange(eta.n)
    eta["sub"] = np.ones(eta.n, dtype=np.int64)
    u = rng.random(eta.n)
    ete = Cols(line=np.arange(eta.n), etab=eta["etab"], taa=np.where(u < 0.6, 2, np.where(u < 0.75, 0, -1)), typ=np.full(eta.n, 4))
    parts.append((eta, {"ETE": ete}))

    _tick("clinic stays")
    # ---------------------------------------------------------------- retroceded expensive drugs (ER_UCD_F)
    r_ucd = np.where(ex.ald30, 0.4, 0.003)
    pid, d, row = draw(rng, ex, r_ucd)
    hosp = np.flatnonzero((codes.finess_sector == "public") & (codes.finess_kind != "geo"))
    et = hosp[rng.integers(0, len(hosp), len(pid))]
    uc = rng.integers(0, len(codes.ucd), len(pid))
    q = rng.integers(1, 5, len(pid))
    unit = rng.integers(100, 3000, len(pid)) * 100
    ucd = _lines(len(pid), pid=pid, cat=CAT_UCD, nat=3317, dtd=d, etab=et, qty=q, base=unit * q, paid=unit * q, rate=100,
                 ppu=1, exo=np.where(ex.ald30[row], 41, 0))
    k = first_of_groups(ucd["pid"], ucd["dtd"], ucd["etab"])
    ucd, uc, q, unit = ucd.take(k), uc[k], q[k], unit[k]
    ucd["dct"] = np.arange(ucd.n)
    ucd["sub"] = np.ones(ucd.n, dtype=np.int64)
    ucdd = Cols(line=np.arange(ucd.n), code=uc, qty=q, price=unit)
    parts.append((ucd, {"UCD": ucdd}))

    _tick("retroceded drugs")
    # ---------------------------------------------------------------- medical transport (no detail rows)
    pid, d, row = draw(rng, ex, np.where(ex.band >= 4, 0.4, 0.05) * np.where(ex.ald, 3.0, 1.0))
    nt = len(pid)
    nat = np.asarray(TRANSPORT_NATURES)[_pick_shares(rng, nt, TRANSPORT_SHARES)]
    amb, tax = prov.idx["AMB"], prov.idx["TAX"]
    pv = np.where(nat == 4214, tax[rng.integers(0, len(tax), nt)], amb[rng.integers(0, len(amb), nt)])
    base = rng.integers(250, 1501, nt) * 20  # 50.00-300.00 EUR, a multiple of 0.20 so that 65 % is whole cents
    exo = np.where(ex.ald[row] & (rng.random(nt) < 0.7), 41, 0)
    tra = _lines(nt, pid=pid, cat=CAT_TRANSPORT, nat=nat, dtd=d, prov=pv, base=base, paid=base, rate=65, exo=exo,
                 presc=prov.idx["GP"][p.gp[pid] % len(prov.idx["GP"])])
    tra = tra.take(first_of_groups(tra["pid"], tra["dtd"], tra["prov"], tra["nat"]))
    tra["dct"] = np.arange(tra.n)
    parts.append((tra, {}))

    _tick("transport")
    # ---------------------------------------------------------------- assemble
    lines_l, det = [], {k: [] for k in DETAILS}
    off_line = off_dct = 0
    for ln, dd in parts:
        ln = Cols(**ln.c)
        ln["dct"] = ln["dct"] + off_dct
        lines_l.append(ln)
        for k, dt in dd.items():
            dt = Cols(**dt.c)
            dt["line"] = dt["line"] + off_line
            det[k].append(dt)
        off_line += ln.n
        off_dct = int(ln["dct"].max()) + 1 if ln.n else off_dct
    lines = Cols.concat(lines_l)
    det = {k: (Cols.concat(v) if v else None) for k, v in det.items()}
    det["ETE"]["price"] = np.zeros(det["ETE"].n, dtype=np.int64)
    for k in ("PHA", "BIO", "CAM", "TIP", "UCD"):
        det[k]["taa"] = np.full(det[k].n, -1)
    N = lines.n
    lines["role"] = np.zeros(N, dtype=np.int64)
    lines["dpnq"] = np.where(rng.random(N) < 0.6, -1, 0)
    lines["ppu"] = np.where(lines["cat"] == CAT_UCD, 1, lines["ppu"])
    lines["cmu"] = cmu_of(lines["pid"], lines["dtd"])
    lines["rate"] = np.where(lines["exo"] > 0, 100, lines["rate"])
    # reimbursed = base x rate, rounded per unit for single-detail lines so that it stays linear in the
    # quantity (a partial régularisation cancels whole units exactly)
    q = np.maximum(lines["qty"], 1)
    per_unit = (lines["sub"] == 1) & (lines["base"] % q == 0)
    r_line = np.round(lines["base"] * lines["rate"] / 100).astype(np.int64)
    r_unit = np.round((lines["base"] // q) * lines["rate"] / 100).astype(np.int64) * q
    lines["reimb"] = np.where(lines["cat"] == CAT_PHARMA, lines["reimb"], np.where(per_unit, r_unit, r_line))
    lines["reimb"] = np.where(lines["cat"] == CAT_PF, -100, lines["reimb"])
    lines["reimb"] = np.where(lines["cat"] == CAT_MAJ, 350, lines["reimb"])
    # CMU-C: the complementary part of the base is paid (CPL_REM_MNT), for non-negative lines
    lines["cpl"] = np.where(lines["cmu"] & (lines["cat"] != CAT_PF), lines["base"] - lines["reimb"], 0)
    # BEN_CMU_TOP: 1 for CMU-C patient-years (0 on ALD-exonerated lines), otherwise 0 or 2 (not applicable)
    lines["cmu_top"] = np.where(lines["cmu"], np.where(lines["exo"] > 0, 0, 1), np.where(rng.random(N) < 0.1, 2, 0))
    for k in ("PHA", "BIO", "CAM", "TIP", "UCD", "ETE"):
        det[k]["role"] = np.zeros(det[k].n, dtype=np.int64)
        det[k]["qty_n"] = det[k]["qty"] if "qty" in det[k] else np.zeros(det[k].n, dtype=np.int64)

    _tick("assembled")
    # processing date per décompte (lag by kind of care; 1.5 % of late ones), capped by the delivery
    lag = np.select([lines["cat"] == CAT_PHARMA, lines["cat"] == CAT_ETAB, lines["cat"] == CAT_UCD],
                    [1 + rng.geometric(0.3, N), 15 + rng.geometric(0.04, N), 10 + rng.geometric(0.06, N)],
                    2 + rng.geometric(0.1, N))
    lag = lag + np.where(rng.random(N) < 0.015, rng.integers(30, 150, N), 0)
    t_line = np.minimum(np.maximum(lines["dtf"], lines["dtd"] + lag), period.flux_cap)
    # the DCIR death record: the final visit is processed after the death
    prot = lines["protected"]
    t_line = np.where(prot, np.minimum(p.death[lines["pid"]] + rng.integers(1, 40, N), period.flux_cap), t_line)
    dct_first = np.full(int(lines["dct"].max()) + 1, N)
    np.minimum.at(dct_first, lines["dct"], np.arange(N))
    lines["T"] = t_line[dct_first[lines["dct"]]]
    dct_size = np.bincount(lines["dct"])
    lines["dct_size"] = dct_size[lines["dct"]]

    _tick("processing dates")
    counts, regul = _plant(rng, period, p, prov, codes, lines, det)
    _tick("planted cleaning anomalies")
    lines, det = _append_cancels_and_malformed(rng, period, p, codes, drugs, lines, det, counts, regul)
    _tick("régularisations and malformed rows")
    _check_g_unique(lines)
    _tick("G-key check")
    return Dcir(lines=lines, det=det, counts=counts, regul=regul)


def _pick_shares(rng, n: int, shares) -> np.ndarray:
    w = np.asarray(shares, dtype=float)
    return rng.choice(len(w), size=n, p=w / w.sum())


def _non_overlapping(pid, etab, dtd, dtf) -> np.ndarray:
    """Indices (sorted) of the lines to keep so that no two lines of a patient at one establishment overlap
    in [dtd, dtf]: a line overlapping an earlier one (by dtd, then dtf) of the same group is dropped."""
    n = len(pid)
    if n == 0:
        return np.zeros(0, np.int64)
    dtd, dtf = np.asarray(dtd, np.int64), np.asarray(dtf, np.int64)
    o = np.lexsort((dtf, dtd, etab, pid))
    p_, e_, a, b = pid[o], etab[o], dtd[o] - dtd.min(), dtf[o] - dtd.min()
    same = np.r_[False, (p_[1:] == p_[:-1]) & (e_[1:] == e_[:-1])]
    gid = np.cumsum(~same)
    span = int(b.max()) + 1
    run = np.maximum.accumulate(gid * span + b)  # running max of dtf within the group (groups ascend)
    prev = np.r_[-1, run[:-1]] - gid * span
    drop = same & (a <= prev)
    return np.sort(o[~drop])


RATES_ANOMALY = {ROLE_DPN71: 0.004, ROLE_STRICT: 0.002, ROLE_BSE0: 0.002, ROLE_TAA1: 0.003,
                 ROLE_FULL_ORIG: 0.003, "partial": 0.002}


def _plant(rng, period, p, prov, codes, lines, det) -> tuple[dict, dict]:
    N = lines.n
    cat = lines["cat"]
    single = lines["dct_size"] == 1
    never_dies = p.death[lines["pid"]] == NULL_DAY
    late_ok = lines["T"] <= period.flux_cap - 95
    sub = lines["sub"]
    # clinic stays (also PMSI stays) and transport lines are never planted
    free = ~lines["protected"] & single & ~np.isin(cat, [CAT_ETAB, CAT_TRANSPORT])
    info_ok = free & np.isin(cat, [CAT_CONSULT, CAT_BIO, CAT_CCAM])
    cancel_ok = free & never_dies & late_ok & (
        (cat == CAT_CONSULT) | (np.isin(cat, [CAT_PHARMA, CAT_BIO, CAT_DEVICE, CAT_UCD]) & (sub == 1)))
    partial_ok = free & never_dies & late_ok & np.isin(cat, [CAT_PHARMA, CAT_BIO, CAT_DEVICE, CAT_UCD]) & (sub == 1)
    order = rng.permutation(N)
    taken = np.zeros(N, dtype=bool)
    chosen = {}
    for role, elig in ((ROLE_DPN71, info_ok), (ROLE_STRICT, info_ok), (ROLE_BSE0, free), (ROLE_TAA1, info_ok),
                       (ROLE_FULL_ORIG, cancel_ok), ("partial", partial_ok)):
        k = max(1, int(round(RATES_ANOMALY[role] * N))) if elig.any() else 0
        cand = order[elig[order] & ~taken[order]][:k]
        taken[cand] = True
        chosen[role] = np.sort(cand)
    role = lines["role"]
    for r in (ROLE_DPN71, ROLE_STRICT, ROLE_BSE0, ROLE_TAA1, ROLE_FULL_ORIG):
        role[chosen[r]] = r
    lines["role"] = role
    hosp = np.flatnonzero((codes.finess_sector == "public") & (codes.finess_kind != "geo"))
    # DPN_QLF = 71 (external care already counted in PMSI): hospital executor, PRS_DPN_QLP = 71 or empty
    i = chosen[ROLE_DPN71]
    lines["dpn"][i] = 71
    lines["dpnq"][i] = np.where(rng.random(len(i)) < 0.5, 71, -1)
    lines["etab"][i] = hosp[rng.integers(0, len(hosp), len(i))]
    lines["ppu"][i] = 1
    i = chosen[ROLE_STRICT]
    lines["dpnq"][i] = 71
    lines["dpn"][i] = 0
    lines["bse_nat"] = lines["nat"].copy()
    lines["bse_nat"][chosen[ROLE_BSE0]] = 0
    i = chosen[ROLE_TAA1]
    et = hosp[rng.integers(0, len(hosp), len(i))]
    lines["etab"][i] = et
    lines["ppu"][i] = 1
    det["ETE"] = Cols.concat([det["ETE"], Cols(line=i, etab=et, taa=np.ones(len(i), np.int64), typ=np.ones(len(i), np.int64),
                                              price=np.zeros(len(i), np.int64), role=np.zeros(len(i), np.int64),
                                              qty_n=np.zeros(len(i), np.int64))])
    counts = {"dcir_for_information": len(chosen[ROLE_DPN71]), "dcir_for_information_strict": len(chosen[ROLE_STRICT]),
              "dcir_bse_prs_nat_0": len(chosen[ROLE_BSE0]), "dcir_ete_ind_taa_1": len(chosen[ROLE_TAA1])}
    regul = {"full": chosen[ROLE_FULL_ORIG], "partial": chosen["partial"]}
    return counts, regul


REASONS = ("wrong_column_count", "bad_date:EXE_SOI_DTD", "bad_number:PRS_PAI_MNT", "bad_integer:PHA_ACT_QSN")


def _append_cancels_and_malformed(rng, period, p, codes, drugs, lines, det, counts, regul):
    """Régularisations (cancelling lines), malformed lines and rows; one concatenation per table."""
    N = lines.n
    new_dct = int(lines["dct"].max()) + 1
    qty_tabs = ("PHA", "BIO", "TIP", "UCD")
    # net (world) values are the generated ones
    for a in ("qty", "paid", "base", "reimb", "cpl", "coef"):
        lines[a + "_n"] = lines[a].copy()
    lines["cancel_of"] = np.full(N, -1)
    lines["reason"] = np.full(N, -1)
    for k in DETAILS:
        det[k]["reason"] = np.full(det[k].n, -1)

    # partial: the world line keeps its net quantity; the written original has net + k, the cancel -k
    part = regul["partial"]
    full = regul["full"]
    kcan = rng.integers(1, 3, len(part))
    q = np.maximum(lines["qty"][part], 1)
    units = {a: lines[a][part] // q for a in ("paid", "base", "reimb", "cpl", "coef")}
    for a in ("paid", "base", "reimb", "cpl", "coef"):
        lines[a][part] += units[a] * kcan
    lines["qty"][part] += kcan
    det_of_line = {}
    for k in qty_tabs:
        dl = det[k]["line"]
        m = np.flatnonzero(np.isin(dl, part))
        li = np.searchsorted(part, dl[m])
        det[k]["qty"] = det[k]["qty"].copy()
        det[k]["qty"][m] += kcan[li]
        det_of_line[k] = (m, li)

    # cancelling lines: same content, negative quantities and amounts, a later flux (1-2 months)
    src = np.concatenate([part, full])
    kc = np.concatenate([kcan, lines["qty"][full]])
    c = lines.take(src)
    qs = np.maximum(c["qty"], 1)
    for a in ("paid", "base", "reimb", "cpl", "coef"):
        c[a] = -(c[a] // qs) * kc
    c["qty"] = -kc
    c["role"] = np.concatenate([np.full(len(part), ROLE_PARTIAL_CANCEL), np.full(len(full), ROLE_FULL_CANCEL)])
    c["dct"] = new_dct + np.arange(len(src))
    new_dct += len(src)
    c["dct_size"] = np.ones(len(src), np.int64)
    flx_o = add_months(month_start(c["T"]), 1)
    flx_c = add_months(flx_o, rng.integers(1, 3, len(src)))
    c["T"] = flx_c - rng.integers(1, 29, len(src))
    c["protected"] = np.zeros(len(src), bool)
    c["cancel_of"] = src
    for a in ("qty", "paid", "base", "reimb", "cpl", "coef"):
        c[a + "_n"] = np.zeros(len(src), np.int64)
    # full: the whole written amounts are cancelled (qty already = written qty)
    nf = len(full)
    if nf:
        for a in ("paid", "base", "reimb", "cpl", "coef"):
            c[a][len(part):] = -lines[a][full]

    # malformed ER_PRS_F lines: copies of world consultations, in their own décompte (no detail rows)
    k_each = 2 + p.n // 2000
    cons = np.flatnonzero((lines["role"] == ROLE_WORLD) & (lines["cat"] == CAT_CONSULT))
    reasons = np.repeat([0, 1, 2], k_each)
    msrc = np.sort(cons[rng.choice(len(cons), size=len(reasons), replace=False)]) if len(cons) >= len(reasons) else np.zeros(0, int)
    bad = lines.take(msrc)
    bad["role"] = np.full(bad.n, ROLE_MALFORMED)
    bad["dct"] = new_dct + np.arange(bad.n)
    bad["dct_size"] = np.ones(bad.n, np.int64)
    bad["protected"] = np.zeros(bad.n, bool)
    bad["reason"] = reasons[:bad.n]
    for a in ("qty", "paid", "base", "reimb", "cpl", "coef"):
        bad[a + "_n"] = np.zeros(bad.n, np.int64)
    lines_all = Cols.concat([lines, c, bad])

    # detail rows of the cancelling lines point to them
    for k in qty_tabs:
        dl = det[k]["line"]
        m = np.flatnonzero(np.isin(dl, src))
        if len(m) == 0:
            continue
        srt = np.argsort(src, kind="stable")
        li = srt[np.searchsorted(src, dl[m], sorter=srt)]
        dk = det[k].take(m)
        dk["line"] = N + li
        dk["qty"] = -kc[li]
        dk["role"] = c["role"][li]
        dk["qty_n"] = np.zeros(len(m), np.int64)
        det[k] = Cols.concat([det[k], dk])

    # malformed ER_PHA_F rows: an extra row attached to a world pharmacy line
    phl = np.flatnonzero((lines["role"] == ROLE_WORLD) & (lines["cat"] == CAT_PHARMA))
    preasons = np.repeat([0, 3], k_each)
    at = np.sort(phl[rng.choice(len(phl), size=len(preasons), replace=False)]) if len(phl) >= len(preasons) else np.zeros(0, int)
    extra = Cols(line=at, code=rng.integers(0, len(drugs.cip13), len(at)), qty=np.ones(len(at), np.int64),
                 price=np.full(len(at), 500, np.int64), taa=np.full(len(at), -1), role=np.full(len(at), ROLE_MALFORMED),
                 qty_n=np.zeros(len(at), np.int64), reason=preasons[:len(at)])
    det["PHA"] = Cols.concat([det["PHA"], extra])

    counts["dcir_regularisation"] = 2 * nf + len(part)
    regul.clear()
    regul.update({"full_pairs": nf, "partial_pairs": len(part)})
    return lines_all, det


def _check_g_unique(lines: Cols) -> None:
    m = np.isin(lines["role"], [ROLE_FULL_CANCEL, ROLE_PARTIAL_CANCEL, ROLE_MALFORMED], invert=True)
    idx = np.flatnonzero(m)
    nat = lines["nat"][idx]
    lut = np.zeros(int(nat.max()) + 1 if len(nat) else 1, dtype=np.int64)
    lut[np.unique(nat)] = np.arange(len(np.unique(nat)))
    # compact keys (span of dtf - dtd and dense nature codes) so that one int64 encodes them all
    keys = [lines["pid"][idx], lines["dtd"][idx], lines["dtf"][idx] - lines["dtd"][idx], lut[nat]] + \
        [lines[c][idx] for c in ("prov", "etab", "maj", "aff")]
    if len(first_of_groups(*keys)) != len(idx):
        raise AssertionError("DCIR régularisation key (G) is not unique among non-cancelling lines")
