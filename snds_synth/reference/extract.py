"""Regenerate the nomenclature extracts of snds_synth/reference/ from a shared/snds checkout.

    python snds_synth/reference/extract.py /path/to/shared/snds [--out snds_synth/reference]

Reads `<snds>/nomenclatures/*.csv` (`;`-separated value tables copied from the Health Data Hub's
schema-snds and synthetic-snds repositories) and writes small `;`-separated UTF-8 extracts, one per
code list the generator uses. The selection is deterministic (fixed code lists, sorted codes, every
k-th code for the long tail), so running it twice gives identical files.

Labels are made safe for the generator's delivery files: no `;`, no `"`, no line breaks, and only
characters that exist in ISO-8859-1 (so a latin-1 delivery can be written): `œ` -> `oe`,
typographic apostrophe -> `'`, etc.

Hand-made lists that do not come from shared/snds (ghm.csv, lpp.csv, finess.csv, atc_common.csv)
are not touched by this script.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

_REPLACE = {
    "œ": "oe", "Œ": "OE", "’": "'", "‘": "'", "“": "", "”": "", "–": "-", "—": "-", "…": "...",
    "·": ".", "®": "", "™": "", "\u00a0": " ", "²": "2", "³": "3", "≥": ">=", "≤": "<=",
}

# Common three-character ICD-10 categories: every code under them is kept (realistic frequent
# diagnoses); the long tail is a systematic sample of the other codes.
COMMON_ICD_CATEGORIES = (
    "A09 A41 B34 C18 C20 C34 C43 C50 C61 C67 C73 C79 C90 C91 D50 D64 E03 E10 E11 E14 E66 E78 E86 E87 "
    "F10 F20 F31 F32 F33 F41 F43 G20 G30 G35 G40 G45 G47 H25 H26 H40 I10 I11 I20 I21 I25 I26 I48 I50 "
    "I63 I64 I70 I80 J10 J11 J15 J18 J20 J44 J45 J96 K21 K29 K35 K40 K52 K57 K59 K76 K80 K81 K85 "
    "L03 M05 M16 M17 M19 M47 M51 M54 M81 N17 N18 N20 N39 N40 O80 R05 R07 R10 R11 R26 R29 R50 R53 "
    "R55 S06 S32 S42 S52 S62 S72 S82 T81 Z08 Z09 Z29 Z30 Z38 Z45 Z48 Z50 Z51 Z52 Z54 Z76 Z95 Z96"
).split()
ICD_TAIL_STEP = 9

CCAM_GROUPS = ("ATM", "ADI", "ADE", "ADC", "ACO")
CCAM_STEP = 5

# Prestation natures (IR_NAT_V.PRS_NAT) the generator writes, with the cost category of the truth.
PRS_NAT_CATEGORY = {
    1098: "consult", 1110: "consult", 1111: "consult", 1112: "consult", 1113: "consult",
    1114: "consult", 1115: "consult", 1191: "consult", 1192: "consult",
    1321: "procedure", 1322: "procedure", 1324: "procedure", 1351: "procedure", 1352: "procedure",
    3311: "drug", 3313: "drug", 3317: "drug", 3341: "drug",
    3211: "biology",
    3512: "device", 3514: "device", 3515: "device", 3521: "device",
    4212: "transport", 4213: "transport", 4214: "transport",
    3111: "other", 3122: "other", 2211: "other", 2252: "other",
}

UCD_STEP = 3


def clean(text: str, maxlen: int | None = None) -> str:
    for a, b in _REPLACE.items():
        text = text.replace(a, b)
    text = text.replace(";", ",").replace('"', "")
    text = re.sub(r"\s+", " ", text).strip()
    text = text.encode("latin-1", errors="replace").decode("latin-1")
    if maxlen and len(text) > maxlen:
        text = text[:maxlen].rstrip()
    return text


def read(nom: Path, name: str) -> list[dict]:
    with open(nom / f"{name}.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter=";"))


def write(out: Path, name: str, header: list[str], rows: list[list]) -> None:
    path = out / f"{name}.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter=";", lineterminator="\n", quoting=csv.QUOTE_NONE, escapechar=None)
        w.writerow(header)
        for r in rows:
            w.writerow(["" if v is None else v for v in r])
    print(f"{path.name}: {len(rows)} rows, {path.stat().st_size} bytes", file=sys.stderr)


def extract(snds: Path, out: Path) -> None:
    nom = snds / "nomenclatures"
    out.mkdir(parents=True, exist_ok=True)

    # ICD-10 (IR_CIM_V): code, label, ALD number (ALD_030_COD; 0 = none).
    icd_pat = re.compile(r"^[A-Z][0-9]{2}[0-9A-Z]{0,2}$")
    rows = sorted((r for r in read(nom, "IR_CIM_V") if icd_pat.match(r["CIM_COD"]) and r["TEC_COL"] == "0"),
                  key=lambda r: r["CIM_COD"])
    common = set(COMMON_ICD_CATEGORIES)
    keep, tail = [], 0
    for r in rows:
        code = r["CIM_COD"]
        ald = r["ALD_030_COD"] if r["ALD_030_COD"].isdigit() else "0"
        if code[:3] in common:
            keep.append([code, clean(r["CIM_LIB"], 90), int(ald), 1])
        else:
            tail += 1
            if tail % ICD_TAIL_STEP == 0:
                keep.append([code, clean(r["CIM_LIB"], 90), int(ald), 0])
    write(out, "icd10", ["code", "label", "ald", "common"], keep)

    # CCAM (IR_CCAM_V63): acts of the medical regroupings, systematic sample.
    rows = sorted((r for r in read(nom, "IR_CCAM_V63") if r["CAM_PRS_RGT"] in CCAM_GROUPS
                   and re.match(r"^[A-Z]{4}[0-9]{3}$", r["CAM_PRS_IDE_COD"])), key=lambda r: r["CAM_PRS_IDE_COD"])
    keep = [[r["CAM_PRS_IDE_COD"], r["CAM_PRS_RGT"], clean(r["CAM_PRS_IDE_LIB"], 90)]
            for i, r in enumerate(rows) if i % CCAM_STEP == 0]
    write(out, "ccam", ["code", "regroupement", "label"], keep)

    # ATC level 5 (openmedic_ATC5): every 7-character code.
    rows = sorted((r for r in read(nom, "openmedic_ATC5") if re.match(r"^[A-Z][0-9]{2}[A-Z]{2}[0-9]{2}$", r["ATC5"])),
                  key=lambda r: r["ATC5"])
    write(out, "atc", ["code", "label"], [[r["ATC5"], clean(r["Libellé ATC5"], 80)] for r in rows])

    # Prestation natures (IR_NAT_V) used by the generator, with their cost category.
    nat = {int(r["PRS_NAT"]): r for r in read(nom, "IR_NAT_V") if r["PRS_NAT"].lstrip("-").isdigit()}
    missing = sorted(set(PRS_NAT_CATEGORY) - set(nat))
    if missing:
        raise SystemExit(f"IR_NAT_V lacks natures {missing}")
    write(out, "prs_nat", ["code", "cb2", "label", "category"],
          [[c, clean(nat[c]["PRS_NAT_CB2"]), clean(nat[c]["PRS_NAT_LIB"]), cat] for c, cat in sorted(PRS_NAT_CATEGORY.items())])

    # Specialties (IR_SPE_V).
    write(out, "spe", ["code", "label"],
          [[int(r["PFS_SPE_COD"]), clean(r["PFS_SPE_LIB"])] for r in read(nom, "IR_SPE_V")])

    # Biology acts (IR_BIO_R): current codes with their B coefficient.
    rows = [r for r in read(nom, "IR_BIO_R") if r["BIO_SUP_DAT"] == "" and r["BIO_TAR_NAT"] == "B"
            and r["BIO_PRS_IDE"].isdigit() and r["BIO_TAR_COF"]]
    rows.sort(key=lambda r: int(r["BIO_PRS_IDE"]))
    write(out, "bio", ["code", "coef", "label"],
          [[int(r["BIO_PRS_IDE"]), r["BIO_TAR_COF"], clean(r["BIO_INF_LIB"], 60)] for r in rows])

    # UCD (NU_UCD_R): systematic sample.
    rows = sorted(read(nom, "NU_UCD_R"), key=lambda r: r["UCD_UCD_COD"])
    write(out, "ucd", ["code", "label"],
          [[r["UCD_UCD_COD"], clean(r["UCD_DSN_LIB"], 60)] for i, r in enumerate(rows) if i % UCD_STEP == 0])

    # Small value tables, copied with their code and label.
    small = {
        "MS_SOR_V": ("ms_sor", "SOR_MOD_COD", "SOR_MOD_LIB"),
        "MS_PRV_V": ("ms_prv", "PRV_COD", "PRV_LIB"),
        "IR_DEP_V": ("ir_dep", "DPN_QLF", "DPN_QLF_LIB"),
        "BEN_CMU_TOP": ("ben_cmu_top", "BEN_CMU_COD", "BEN_CMU_LIB"),
        "IR_ALD_V": ("ir_ald", "ALD_030_COD", "ALD_030_LIB"),
        "IR_HAD_PEC_PAL": ("ir_had_pec_pal", "PEC_PAL_COD", "PEC_PAL_LIB"),
        "IR_EXO_V": ("ir_exo", "EXO_MTF", "EXO_LIB"),
        "IR_TAA_V": ("ir_taa", "TAA_COD", "TAA_LIB"),
    }
    for table, (name, code, label) in small.items():
        write(out, name, ["code", "label"], [[r[code], clean(r[label], 80)] for r in read(nom, table)])

    # Departments (IR_DPT_V): metropolitan and overseas departments, 2-character code as in PMSI BDI_DEP.
    rows = [r for r in read(nom, "IR_DPT_V") if r["TEC_COL"] == "0" and r["GEO_DPT_COD"] != "000"]
    write(out, "dpt", ["code", "region", "label"],
          [[r["GEO_DPT_COD"], r["GEO_REG_COD"], clean(r["GEO_DPT_LIB"])] for r in rows])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("snds", type=Path, help="shared/snds checkout (holding nomenclatures/)")
    p.add_argument("--out", type=Path, default=HERE, help="output directory (default: this directory)")
    args = p.parse_args(argv)
    if not (args.snds / "nomenclatures").is_dir():
        p.error(f"{args.snds}/nomenclatures not found")
    extract(args.snds, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
