"""Synthetic drug referential (IR_PHA_R) over real ATC codes, and its synthetic DDD table (REF_ATC_DDD).

Dispensed DDDs of one ER_PHA_F row:

    ddd = PHA_ACT_QSN * PHA_UPC_NBR * PHA_SUB_DOS / DDD_VAL

with PHA_UPC_NBR the number of units (tablets...) per box, PHA_SUB_DOS the strength of one unit in
PHA_DOS_UNI, and DDD_VAL (REF_ATC_DDD, same unit DDD_UNI) the defined daily dose of the ATC code.
Values are chosen so that the result is exact with 3 decimals. DDD values are synthetic (the WHO
table is not redistributable), not WHO values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .codes import Codes

STRENGTHS = np.array([1, 2.5, 5, 10, 20, 25, 40, 50, 100, 200, 250, 400, 500, 1000])
UNITS_PER_BOX = np.array([10, 14, 20, 28, 30, 56, 60, 84, 90, 100])
DDD_FACTOR = np.array([0.5, 1, 2, 4, 5, 8, 10])
FORMS = np.array(["CPR", "CPR PELLICULÉ", "GÉLULE", "CPR SÉCABLE", "CPR ENROBÉ", "CPR EFFERVESCENT", "GÉLULE GASTRO-RÉSISTANTE"])
LABS = np.array(["LABORATOIRES ÉLÉA", "PHARMA SANTÉ", "GÉNÉRIQUES DU RHÔNE", "LABORATOIRES ARCÈS", "BIOGALÉNIQUE",
                 "SANTÉ FRANÇAISE", "LABORATOIRE DE L'OUEST", "THÉRAPIA"])
# Usual strength (per unit, in the drug's unit) of the common ATC codes; other codes get a random one.
BASE_STRENGTH = {
    "N02BE01": 500, "M01AE01": 200, "A02BC01": 20, "A02BC02": 20, "A02BC05": 20, "C10AA05": 10, "C10AA01": 20,
    "C10AA07": 5, "A10BA02": 500, "C07AB07": 5, "C07AB02": 100, "C09AA05": 5, "C09CA01": 50, "C08CA01": 5,
    "C03CA01": 40, "B01AC06": 75, "B01AF01": 10, "B01AF02": 2.5, "H03AA01": 50, "N05BA12": 0.25, "N05BA04": 10,
    "N05CF01": 7.5, "N06AB10": 10, "N06AB06": 50, "N06AX11": 15, "J01CA04": 500, "J01CR02": 500, "J01FA10": 250,
    "R03AC02": 0.1, "R06AE07": 10, "R06AX27": 5, "N02AX02": 50, "A11CC05": 1000, "B03AA07": 80, "M04AA01": 100,
    "A03FA03": 10, "N03AX16": 75, "N05AH04": 25, "N05AX08": 1, "C01DA14": 20, "A10AE04": 100, "A10BH01": 50,
}
CHRONIC_PREFIXES = ("A02BC", "A10", "B01", "C0", "C10", "H03", "N05", "N06", "R03", "M04", "N03")


def ean13_check(first12: np.ndarray) -> np.ndarray:
    """EAN-13 check digit of 12-digit integers."""
    digits = np.stack([(first12 // 10**(11 - i)) % 10 for i in range(12)], axis=1)
    w = np.array([1, 3] * 6)
    return (10 - (digits * w).sum(axis=1) % 10) % 10


@dataclass
class Drugs:
    cip13: np.ndarray  # int64
    cip7: np.ndarray
    atc: np.ndarray  # str
    atc_label: np.ndarray
    units: np.ndarray  # units per box
    strength: np.ndarray  # per unit
    unit: np.ndarray  # mg, mcg, UI
    route: np.ndarray  # O, P
    price: np.ndarray  # cents per box
    nature: np.ndarray  # PRS_NAT_REF: 3313 (65 %), 3341 (15 %), 3311 (100 %)
    rate: np.ndarray
    name: np.ndarray
    form: np.ndarray
    lab: np.ndarray
    chronic: np.ndarray  # bool: long-term treatment
    weight: np.ndarray  # popularity
    ddd_val: np.ndarray  # DDD of the drug's ATC (same unit)
    # REF_ATC_DDD rows
    ref_atc: np.ndarray
    ref_route: np.ndarray
    ref_ddd: np.ndarray
    ref_unit: np.ndarray

    @property
    def ddd_per_box_x1000(self) -> np.ndarray:
        return np.round(self.units * self.strength / self.ddd_val * 1000).astype(np.int64)


def make_drugs(rng: np.random.Generator, codes: Codes, n_patients: int) -> Drugs:
    common = [c for c in codes.atc_common_weight]
    others = np.setdiff1d(codes.atc, np.array(common))
    n_other = int(min(len(others), 120 + n_patients // 500))
    pick = np.sort(rng.choice(len(others), size=n_other, replace=False))
    atcs = np.array(common + list(others[pick]))
    atc_w = np.array([codes.atc_common_weight[c] for c in common] + list(rng.pareto(1.5, size=n_other) * 0.5 + 0.2))
    label_of = dict(zip(codes.atc, codes.atc_label))

    n_atc = len(atcs)
    base_strength = STRENGTHS[rng.integers(0, len(STRENGTHS), size=n_atc)].astype(float)
    for i, c in enumerate(atcs[:len(common)]):
        base_strength[i] = BASE_STRENGTH.get(c, base_strength[i])
    unit = np.where(np.char.startswith(atcs, "A10A") | np.char.startswith(atcs, "A11CC"), "UI",
                    np.where(np.char.startswith(atcs, "H03AA"), "mcg", "mg"))
    route = np.where(np.char.startswith(atcs, "A10A") | np.char.startswith(atcs, "B01AB"), "P", "O")
    ddd_atc = base_strength * DDD_FACTOR[rng.integers(0, len(DDD_FACTOR), size=n_atc)]
    chronic_atc = np.zeros(n_atc, dtype=bool)
    for p in CHRONIC_PREFIXES:
        chronic_atc |= np.char.startswith(atcs, p)

    n_pres = rng.integers(1, 4, size=n_atc)  # presentations per ATC
    a = np.repeat(np.arange(n_atc), n_pres)
    n = len(a)
    strength = base_strength[a] * np.array([0.5, 1, 2])[rng.integers(0, 3, size=n)]
    units = UNITS_PER_BOX[rng.integers(0, len(UNITS_PER_BOX), size=n)]
    # one presentation per (ATC, strength, units)
    key = a * 10**9 + np.round(strength * 100).astype(np.int64) * 1000 + units
    _, first = np.unique(key, return_index=True)
    keep = np.sort(first)
    a, strength, units = a[keep], strength[keep], units[keep]
    n = len(a)

    serial = rng.choice(9_000_000, size=n, replace=False) + 1_000_000
    first12 = 340090_000000 + rng.choice(1_000_000, size=n, replace=False)
    cip13 = first12 * 10 + ean13_check(first12)
    cip7 = serial
    u = rng.random(n)
    nature = np.where(u < 0.78, 3313, np.where(u < 0.9, 3341, 3311))
    rate = np.select([nature == 3313, nature == 3341], [65, 15], 100)
    price = np.round((150 + rng.pareto(1.2, size=n) * 400) * np.sqrt(units / 30)).astype(np.int64)
    price = np.minimum(price, 80000)
    form = FORMS[rng.integers(0, len(FORMS), size=n)]
    lab = LABS[rng.integers(0, len(LABS), size=n)]
    inn = np.array([label_of[x] for x in atcs])[a]
    inn_short = np.array([s.split(",")[0][:40].strip() for s in inn])
    strength_txt = np.array([f"{s:g}" for s in strength])
    name = np.array([f"{i} {s}{u_.upper()} {f}" for i, s, u_, f in zip(inn_short, strength_txt, unit[a], form)])
    w = atc_w[a] / np.bincount(a, minlength=n_atc)[a]
    return Drugs(
        cip13=cip13, cip7=cip7, atc=atcs[a], atc_label=inn, units=units, strength=strength, unit=unit[a],
        route=route[a], price=price, nature=nature, rate=rate, name=name, form=form, lab=lab,
        chronic=chronic_atc[a], weight=w / w.sum(), ddd_val=ddd_atc[a],
        ref_atc=atcs, ref_route=route, ref_ddd=ddd_atc, ref_unit=unit,
    )
