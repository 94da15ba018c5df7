"""The synthetic world: patients (sex, birth, death and its sources, CMU-C, ALD) and providers.

Everything is drawn with one numpy Generator in a fixed order, vectorised over patients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .codes import Codes
from .fmt import NULL_DAY, day, from_ymd, ymd

ALPHABET = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
PLACEHOLDER_NIRS = ("xxxxxxxxxxxxxxxxx", "XXXXXXXXXXXXXXXXD")

DEATH_SOURCES = ("IR_BEN_R", "DCIR", "PMSI", "KI_CCI_R")


@dataclass
class Period:
    y1: int
    y2: int

    @property
    def start(self) -> int:
        return day(f"{self.y1}-01-01")

    @property
    def end(self) -> int:
        return day(f"{self.y2}-12-31")

    @property
    def years(self) -> np.ndarray:
        return np.arange(self.y1, self.y2 + 1)

    def year_start(self, y) -> np.ndarray:
        return from_ymd(y, 1, 1)

    def year_end(self, y) -> np.ndarray:
        return from_ymd(y, 12, 31)

    @property
    def flux_cap(self) -> int:
        """Last processing date (FLX_TRT_DTD) of the delivery: flux months run to June of y2+1."""
        return day(f"{self.y2 + 1}-05-31")


def random_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct 17-character upper-case alphanumeric identifiers."""
    out = ALPHABET[rng.integers(0, 36, size=(n, 17))]
    ids = out.view("S17").ravel().astype("U17")
    while True:
        _, first, counts = np.unique(ids, return_index=True, return_counts=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        dup |= np.isin(ids, np.array(PLACEHOLDER_NIRS))
        if not dup.any():
            return ids
        k = int(dup.sum())
        ids[dup] = ALPHABET[rng.integers(0, 36, size=(k, 17))].view("S17").ravel().astype("U17")


def age_years(birth: np.ndarray, at: np.ndarray) -> np.ndarray:
    by, bm, bd = ymd(birth)
    ay, am, ad = ymd(at)
    return ay - by - ((am < bm) | ((am == bm) & (ad < bd)))


def age_months(birth: np.ndarray, at: np.ndarray) -> np.ndarray:
    by, bm, bd = ymd(birth)
    ay, am, ad = ymd(at)
    return (ay - by) * 12 + (am - bm) - (ad < bd)


@dataclass
class Patients:
    n: int
    psa: np.ndarray  # BEN_NIR_PSA (str U17)
    nir_ano: np.ndarray  # BEN_NIR_ANO
    idt_ano: np.ndarray  # BEN_IDT_ANO
    sex: np.ndarray  # 1 M, 2 F
    birth: np.ndarray  # day number
    dpt: np.ndarray  # index into codes.dpt
    cdi_nir: np.ndarray  # '00', '03', '04'
    death: np.ndarray  # true death day (care never after it) or NULL_DAY
    death_src: dict  # source -> day or NULL_DAY (IR_BEN_R, DCIR, PMSI, KI_CCI_R)
    incoherent: np.ndarray  # bool
    cmu: np.ndarray  # (n, n_years) bool: CMU-C status per year
    # ALD (IR_IMB_R rows)
    ald_pid: np.ndarray
    ald_icd: np.ndarray
    ald_start: np.ndarray
    ald_end: np.ndarray  # NULL_DAY = open
    # providers
    gp: np.ndarray  # index into providers of kind GP
    pharmacy: np.ndarray
    org: np.ndarray  # ORG_CLE_NUM strings (caisse)

    @property
    def dead(self) -> np.ndarray:
        return self.death != NULL_DAY

    def life_end(self, period: Period) -> np.ndarray:
        return np.where(self.dead, self.death, period.end)

    def death_reported(self) -> np.ndarray:
        """Latest death date among sources (the truth's death_date), NULL_DAY if alive."""
        stack = np.stack([self.death_src[s] for s in DEATH_SOURCES])
        stack = np.where(stack == NULL_DAY, np.iinfo(np.int64).min, stack)
        out = stack.max(axis=0)
        return np.where(out == np.iinfo(np.int64).min, NULL_DAY, out)


# Share of the population by age band at the start of the period (France, roughly).
AGE_BANDS = [(0, 19, 0.23), (20, 39, 0.24), (40, 59, 0.26), (60, 74, 0.17), (75, 98, 0.10)]


def death_hazard(age: np.ndarray) -> np.ndarray:
    return np.select([age < 1, age < 40, age < 60, age < 75, age < 85], [0.003, 0.001, 0.004, 0.015, 0.05], 0.15)


def make_patients(rng: np.random.Generator, n: int, period: Period, codes: Codes, n_gp: int, n_pharmacy: int) -> Patients:
    ids = random_ids(rng, 3 * n)
    psa, nir_ano, idt_ano = ids[:n], ids[n:2 * n], ids[2 * n:]
    sex = np.where(rng.random(n) < 0.515, 2, 1).astype(np.int64)

    # Birth: age band at period start; about 1 % of the population per year is born during the period.
    nyears = period.y2 - period.y1 + 1
    newborn = rng.random(n) < min(0.3, 0.011 * nyears)
    band = rng.choice(len(AGE_BANDS), size=n, p=[b[2] for b in AGE_BANDS])
    lo = np.array([b[0] for b in AGE_BANDS])[band]
    hi = np.array([b[1] for b in AGE_BANDS])[band]
    age0 = lo + rng.integers(0, hi - lo + 1)
    birth = period.start - 1 - np.floor((age0 + rng.random(n)) * 365.25).astype(np.int64)
    birth_new = period.start + rng.integers(0, max(1, period.end - period.start - 60), size=n)
    birth = np.where(newborn, birth_new, birth)

    dpt = rng.integers(0, len(codes.dpt), size=n)
    u = rng.random(n)
    cdi_nir = np.where(u < 0.97, "00", np.where(u < 0.985, "03", "04"))

    # Death: yearly hazard by age, day uniform in the year; kept away from the period's very end so
    # that every source date (up to +6 days, +120 for an incoherent source) is representable.
    death = np.full(n, NULL_DAY, dtype=np.int64)
    for y in period.years:
        ys, ye = period.year_start(y), period.year_end(y)
        alive = (death == NULL_DAY) & (birth < ye - 30)
        age = age_years(birth, np.full(n, ys))
        dies = alive & (rng.random(n) < death_hazard(np.maximum(age, 0)))
        lo_d = np.maximum(np.maximum(ys, birth + 15), period.start + 15)
        hi_d = np.minimum(ye, period.end - 10)
        d = lo_d + np.floor(rng.random(n) * np.maximum(hi_d - lo_d, 1)).astype(np.int64)
        death = np.where(dies & (hi_d > lo_d), d, death)
    dead = death != NULL_DAY

    # Death sources: each records the death with probability p, at +0..6 days (coherent).
    probs = {"IR_BEN_R": 0.92, "DCIR": 0.8, "PMSI": 0.4, "KI_CCI_R": 0.85}
    death_src = {}
    for s in ("IR_BEN_R", "DCIR", "PMSI", "KI_CCI_R"):
        has = dead & (rng.random(n) < probs[s])
        off = np.where(rng.random(n) < 0.75, 0, rng.integers(1, 7, size=n))
        death_src[s] = np.where(has, death + off, NULL_DAY)
    none = dead & np.all(np.stack([death_src[s] == NULL_DAY for s in death_src]), axis=0)
    death_src["IR_BEN_R"] = np.where(none, death, death_src["IR_BEN_R"])
    # Incoherent deaths: IR_BEN_R or KI_CCI_R recorded 7..120 days late, for ~15 % of the deaths that
    # have at least two sources (at least one such death when any is eligible).
    nsrc = np.sum(np.stack([death_src[s] != NULL_DAY for s in death_src]), axis=0)
    eligible = dead & (nsrc >= 2) & ((death_src["IR_BEN_R"] != NULL_DAY) | (death_src["KI_CCI_R"] != NULL_DAY))
    incoherent = eligible & (rng.random(n) < 0.15)
    if eligible.any() and not incoherent.any():
        incoherent[np.flatnonzero(eligible)[0]] = True
    shift = rng.integers(7, 121, size=n)
    pick_ki = (death_src["KI_CCI_R"] != NULL_DAY) & ((death_src["IR_BEN_R"] == NULL_DAY) | (rng.random(n) < 0.5))
    for s, sel in (("KI_CCI_R", incoherent & pick_ki), ("IR_BEN_R", incoherent & ~pick_ki)):
        others = np.stack([np.where(death_src[o] == NULL_DAY, np.iinfo(np.int64).min, death_src[o])
                           for o in death_src if o != s]).max(axis=0)
        # shifted relative to the other sources' latest date so that max - min >= 7 holds exactly
        death_src[s] = np.where(sel, np.maximum(others, death) + shift, death_src[s])
    stack = np.stack([death_src[s] for s in death_src])
    present = stack != NULL_DAY
    mx = np.where(present, stack, np.iinfo(np.int64).min).max(axis=0)
    mn = np.where(present, stack, np.iinfo(np.int64).max).min(axis=0)
    incoherent = dead & (mx - mn >= 7)

    # CMU-C by year: ~9 % of the under-65s, 2 % above; mostly persistent.
    age_mid = age_years(birth, np.full(n, (period.start + period.end) // 2))
    base = rng.random(n) < np.where(age_mid < 65, 0.09, 0.02)
    cmu = np.zeros((n, nyears), dtype=bool)
    for i in range(nyears):
        cmu[:, i] = (base & (rng.random(n) < 0.88)) | (rng.random(n) < 0.004)

    # ALD: prevalence by age; 1 or 2 ALDs; ICD-10 codes eligible to an ALD (IR_CIM_V.ALD_030_COD).
    age_end = age_years(birth, np.full(n, period.end))
    prev = np.select([age_end < 20, age_end < 40, age_end < 60, age_end < 75], [0.01, 0.04, 0.12, 0.25], 0.4)
    has_ald = rng.random(n) < prev
    n_ald = np.where(has_ald, np.where(rng.random(n) < 0.8, 1, 2), 0)
    ald_pid = np.repeat(np.arange(n), n_ald)
    elig = np.flatnonzero(codes.icd_ald > 0)
    w = np.where(codes.icd_common[elig], 6.0, 1.0)
    ald_icd = elig[rng.choice(len(elig), size=len(ald_pid), p=w / w.sum())]
    life_end = np.where(dead, death, period.end)
    lo_s = np.maximum(birth[ald_pid] + 30, day("2000-01-01"))
    hi_s = np.minimum(life_end[ald_pid], period.end)
    lo_s = np.minimum(lo_s, hi_s)
    ald_start = lo_s + np.floor(rng.random(len(ald_pid)) * (hi_s - lo_s + 1)).astype(np.int64)
    closed = rng.random(len(ald_pid)) < 0.25
    ald_end = np.where(closed, ald_start + rng.integers(365, 3650, size=len(ald_pid)), NULL_DAY)
    ald_end = np.where(closed & dead[ald_pid], np.minimum(ald_end, death[ald_pid]), ald_end)
    # one patient, one ALD code
    key = ald_pid * 100000 + ald_icd
    _, first = np.unique(key, return_index=True)
    keep = np.sort(first)
    ald_pid, ald_icd, ald_start, ald_end = ald_pid[keep], ald_icd[keep], ald_start[keep], ald_end[keep]

    gp = rng.integers(0, n_gp, size=n)
    pharmacy = rng.integers(0, n_pharmacy, size=n)
    org_num = np.array([f"01{d}000" for d in codes.dpt])[dpt]

    return Patients(
        n=n, psa=psa, nir_ano=nir_ano, idt_ano=idt_ano, sex=sex, birth=birth, dpt=dpt, cdi_nir=cdi_nir,
        death=death, death_src=death_src, incoherent=incoherent, cmu=cmu,
        ald_pid=ald_pid, ald_icd=ald_icd, ald_start=ald_start, ald_end=ald_end,
        gp=gp, pharmacy=pharmacy, org=org_num,
    )


@dataclass
class Providers:
    """Health professionals and pharmacies (PFS_EXE_NUM, specialty PSE_SPE_COD, nature PSE_ACT_NAT)."""
    num: np.ndarray  # PFS_EXE_NUM, 8 characters
    spe: np.ndarray
    act: np.ndarray
    kind: np.ndarray  # GP, SPE, PHA, LAB, NUR, KIN, SUP, AMB (ambulances, VSL), TAX (taxis)
    sector2: np.ndarray  # specialists with extra fees (dépassements)
    idx: dict  # kind -> array of provider indices


SPECIALTIES = np.array([3, 5, 6, 7, 8, 11, 12, 13, 14, 15, 32, 33, 2, 4, 41])
SPECIALTY_W = np.array([12, 8, 10, 9, 5, 6, 6, 4, 5, 12, 4, 8, 3, 3, 5], dtype=float)


def make_providers(rng: np.random.Generator, n: int, codes: Codes) -> Providers:
    sizes = {
        "GP": max(5, n // 900), "SPE": max(15, n // 500), "PHA": max(4, n // 1500), "LAB": max(3, n // 4000),
        "NUR": max(4, n // 1200), "KIN": max(3, n // 1500), "SUP": max(2, n // 8000),
        "AMB": max(2, n // 4000), "TAX": max(2, n // 3000),  # ambulance / VSL companies, taxis
    }
    kinds, spe, act = [], [], []
    for k, m in sizes.items():
        kinds += [k] * m
        if k == "GP":
            spe += list(np.where(rng.random(m) < 0.8, 1, 22))
            act += [0] * m
        elif k == "SPE":
            spe += list(SPECIALTIES[rng.choice(len(SPECIALTIES), size=m, p=SPECIALTY_W / SPECIALTY_W.sum())])
            act += [0] * m
        else:
            spe += [0] * m
            act += [{"PHA": 50, "LAB": 39, "NUR": 24, "KIN": 26, "SUP": 60, "AMB": 55, "TAX": 56}[k]] * m
    total = len(kinds)
    dpt = codes.dpt[rng.integers(0, len(codes.dpt), size=total)]
    serial = rng.permutation(90000)[:total] + 10000
    num = np.array([f"{d[-2:]}{'1' if k in ('GP', 'SPE') else '2'}{s:05d}" for d, k, s in zip(dpt, kinds, serial)])
    kinds = np.array(kinds)
    return Providers(
        num=num, spe=np.array(spe, dtype=np.int64), act=np.array(act, dtype=np.int64), kind=kinds,
        sector2=rng.random(total) < 0.4, idx={k: np.flatnonzero(kinds == k) for k in sizes},
    )
