"""Code lists shipped in snds_synth/reference/ (see reference/extract.py and docs/synthetic-data.md)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

REF_DIR = Path(__file__).resolve().parent / "reference"


def read_ref(name: str) -> list[dict]:
    with open(REF_DIR / f"{name}.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter=";"))


@dataclass(frozen=True)
class Codes:
    icd: np.ndarray  # ICD-10 codes, no dot
    icd_label: np.ndarray
    icd_common: np.ndarray  # bool
    icd_ald: np.ndarray  # ALD number (1..30) or 0
    ccam: np.ndarray
    ccam_rgt: np.ndarray
    atc: np.ndarray
    atc_label: np.ndarray
    atc_common_weight: dict
    bio: np.ndarray
    bio_coef: np.ndarray  # B coefficient
    ucd: np.ndarray
    ucd_label: np.ndarray
    lpp: np.ndarray
    lpp_nature: np.ndarray
    lpp_price_cents: np.ndarray
    ghm: np.ndarray
    ghm_kind: np.ndarray
    ghm_ghs: np.ndarray
    finess: np.ndarray
    finess_kind: np.ndarray
    finess_group: np.ndarray
    finess_sector: np.ndarray
    finess_sources: np.ndarray
    dpt: np.ndarray  # 3-character department codes (IR_DPT_V)
    had_pec: np.ndarray
    prs_nat_category: dict


@lru_cache(maxsize=1)
def load() -> Codes:
    icd = read_ref("icd10")
    ccam = read_ref("ccam")
    atc = read_ref("atc")
    atc_codes = {r["code"] for r in atc}
    bio = read_ref("bio")
    ucd = read_ref("ucd")
    lpp = read_ref("lpp")
    ghm = read_ref("ghm")
    fin = read_ref("finess")
    dpt = [r for r in read_ref("dpt") if r["code"][:2] not in ("97", "99") and r["code"] != "000"]
    ald = np.array([int(r["ald"]) for r in icd])
    return Codes(
        icd=np.array([r["code"] for r in icd]),
        icd_label=np.array([r["label"] for r in icd]),
        icd_common=np.array([r["common"] == "1" for r in icd]),
        icd_ald=np.where((ald >= 1) & (ald <= 30), ald, 0),
        ccam=np.array([r["code"] for r in ccam]),
        ccam_rgt=np.array([r["regroupement"] for r in ccam]),
        atc=np.array([r["code"] for r in atc]),
        atc_label=np.array([r["label"] for r in atc]),
        atc_common_weight={r["code"]: float(r["weight"]) for r in read_ref("atc_common") if r["code"] in atc_codes},
        bio=np.array([int(r["code"]) for r in bio]),
        bio_coef=np.array([float(r["coef"]) for r in bio]),
        ucd=np.array([r["code"] for r in ucd]),
        ucd_label=np.array([r["label"] for r in ucd]),
        lpp=np.array([int(r["code"]) for r in lpp]),
        lpp_nature=np.array([int(r["nature"]) for r in lpp]),
        lpp_price_cents=np.array([round(float(r["unit_price"]) * 100) for r in lpp]),
        ghm=np.array([r["code"] for r in ghm]),
        ghm_kind=np.array([r["kind"] for r in ghm]),
        ghm_ghs=np.array([int(r["ghs"]) if r["ghs"] else 0 for r in ghm]),
        finess=np.array([r["finess"] for r in fin]),
        finess_kind=np.array([r["kind"] for r in fin]),
        finess_group=np.array([r["group"] for r in fin]),
        finess_sector=np.array([r["sector"] for r in fin]),
        finess_sources=np.array([r["sources"] for r in fin]),
        dpt=np.array([r["code"] for r in dpt]),
        had_pec=np.array([r["code"] for r in read_ref("ir_had_pec_pal") if r["code"] != "00"]),
        prs_nat_category={int(r["code"]): r["category"] for r in read_ref("prs_nat")},
    )
