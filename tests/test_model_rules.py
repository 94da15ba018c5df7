"""Merge and model rules (spark_jobs/merge.py, spark_jobs/model.py, sql/merge/, sql/model/,
config/model.yaml) on a tiny hand-built clean zone and referentials, on both engines.

The clean zone is typed as the clean step writes it (amounts DECIMAL(18,2); PMSI chaining tables
with `stay_start`, `stay_end`); the merge and model steps run once per engine and the tests below
check their outputs.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from spark_jobs.clean import load_clean_config
from spark_jobs.delivery import IngestConfig
from spark_jobs.merge import load_model_config, run_merge
from spark_jobs.model import run_model
from test_clean_rules import column_types, keys, read_rows, scenario_once, write_table

ICFG = IngestConfig.load(None)
D = dt.date.fromisoformat
AMOUNTS = {c: "DECIMAL(18,2)" for c in load_clean_config()["dcir"]["amount_columns"]}
STAY_DATES = {"stay_start": "DATE", "stay_end": "DATE"}


def prs(n: int, patient: str, care: str | None, **cols) -> dict:
    """A cleaned ER_PRS_F line (claim `n`, care date `care`), in flux month 2019-06 for care of 2019,
    else 2020-06 (which dates a line without care date)."""
    flux = "2019-06-01" if care is not None and care < "2020" else "2020-06-01"
    return {**keys(n, flux), "BEN_NIR_PSA": patient,
            "BEN_RNG_GEM": 1, "EXE_SOI_DTD": care, "EXE_SOI_DTF": care, "PRS_NAT_REF": 1111, "PSE_SPE_COD": 1,
            "CPL_MAJ_TOP": 0, "CPL_AFF_COD": 0, "BEN_CMU_TOP": 0, "BEN_SEX_COD": None, "BEN_NAI_ANN": None,
            "BEN_DCD_DTE": None, "PRS_ACT_QTE": 1, "PRS_PAI_MNT": 25.0, "BSE_REM_MNT": 17.5, **cols}


CIP_PARACETAMOL, CIP_BISOPROLOL, CIP_UNKNOWN = 3400930000001, 3400930000002, 3400930000003


def _clean_zone() -> dict[str, list[dict]]:
    drug_line = prs(20, "PAT1", "2019-04-01", PRS_NAT_REF=3317)
    return {
        "dcir/ER_PRS_F": [
            # PAT1: consultations and lines that are not (majoration, participation forfaitaire)...
            prs(1, "PAT1", "2019-03-01", BEN_SEX_COD=1, BEN_NAI_ANN=1951, BEN_CMU_TOP=1),
            prs(2, "PAT1", "2019-03-02", CPL_MAJ_TOP=2),                          # majoration: not a consult
            prs(3, "PAT1", "2019-03-03", CPL_AFF_COD=16),                         # participation forfaitaire
            prs(4, "PAT1", "2019-03-04", PRS_NAT_REF=1112, CPL_MAJ_TOP=None, CPL_AFF_COD=None),  # consult
            prs(5, "PAT1", "2019-03-05", CPL_MAJ_TOP=1, PSE_SPE_COD=7),           # consult (CPL_MAJ_TOP < 2)
            prs(6, "PAT1", "2019-03-06", PRS_NAT_REF=1111, PRS_ACT_QTE=0),        # no net quantity
            prs(7, "PAT1", None, PRS_NAT_REF=9999),                               # care date: FLX_DIS_DTD
            drug_line,
            # PAT2: deaths 3 days apart (IR_BEN_R 2020-05-01, DCIR 2020-05-04); DCIR after the stays.
            prs(8, "PAT2", "2020-04-20", BEN_DCD_DTE="2020-05-04", BEN_CMU_TOP=2),
            # PAT3: DCIR care before the stay end.
            prs(9, "PAT3", "2020-03-01"),
            # PAT6: deaths 6 days apart (IR_BEN_R 2020-05-01, DCIR 2020-05-07).
            prs(10, "PAT6", "2020-04-01", BEN_DCD_DTE="2020-05-07"),
            # PAT8: not in IR_BEN_R: sex and birth year from DCIR.
            prs(11, "PAT8", "2020-02-01", BEN_SEX_COD=1, BEN_NAI_ANN=1980),
            # PAT9: IR_BEN_R codes the birth year 1600 (missing); DCIR knows it.
            prs(12, "PAT9", "2020-03-15", PRS_NAT_REF=9999, BEN_NAI_ANN=1947),
        ],
        "dcir/ER_PHA_F": [
            {**keys(20, "2019-06-01"), "PHA_PRS_C13": CIP_PARACETAMOL, "PHA_ACT_QSN": 2, "PHA_ACT_PRU": 2.18},
            {**keys(20, "2019-06-01"), "PHA_PRS_C13": CIP_BISOPROLOL, "PHA_ACT_QSN": 1, "PHA_ACT_PRU": 3.5},
            {**keys(20, "2019-06-01"), "PHA_PRS_C13": CIP_UNKNOWN, "PHA_ACT_QSN": 1, "PHA_ACT_PRU": 1.0},
        ],
        "pmsi/T_MCOaaB": [
            {"year": 2020, "ETA_NUM": "010000001", "RSA_NUM": "R2", "DGN_PAL": "J18.9", "ENT_MOD": "8",
             "SOR_MOD": "8", "GRG_GHM": "04M05T"},
            {"year": 2020, "ETA_NUM": "010000001", "RSA_NUM": "R3", "DGN_PAL": "C66.9", "DGN_REL": " ",
             "ENT_MOD": "8", "SOR_MOD": "9", "GRG_GHM": "11M12T"},
        ],
        "pmsi/T_MCOaaC": [
            {"year": 2020, "ETA_NUM": "010000001", "RSA_NUM": "R2", "NIR_ANO_17": "PAT2",
             "stay_start": "2020-04-10", "stay_end": "2020-04-15"},
            {"year": 2020, "ETA_NUM": "010000001", "RSA_NUM": "R3", "NIR_ANO_17": "PAT3",
             "stay_start": "2020-05-01", "stay_end": "2020-05-11"},   # died in hospital: 10 days after IR_BEN_R
        ],
        "pmsi/T_MCOaaD": [
            {"year": 2020, "ETA_NUM": "010000001", "RSA_NUM": "R3", "ASS_DGN": " e11.9"},
            {"year": 2020, "ETA_NUM": "010000001", "RSA_NUM": "R3", "ASS_DGN": "I10"},
        ],
        "pmsi/T_MCOaaA": [
            {"year": 2020, "ETA_NUM": "010000001", "RSA_NUM": "R3", "CDC_ACT": "JCFA001", "ENT_DAT_DEL": 2},
        ],
        "pmsi/T_SSRaaB": [  # two weeks repeating the same diagnoses: one diagnosis each
            {"year": 2020, "ETA_NUM": "020000002", "RHA_NUM": "S2", "RHS_NUM": "1", "MOR_PRP": "S72.0",
             "ETL_AFF": "W19", "ENT_MOD": "6", "SOR_MOD": "8", "GRG_GME": "0811A1"},
            {"year": 2020, "ETA_NUM": "020000002", "RHA_NUM": "S2", "RHS_NUM": "2", "MOR_PRP": "S72.0",
             "ETL_AFF": "W19", "ENT_MOD": "6", "SOR_MOD": "8", "GRG_GME": "0811A1"},
        ],
        "pmsi/T_SSRaaC": [
            {"year": 2020, "ETA_NUM": "020000002", "RHA_NUM": "S2", "NIR_ANO_17": "PAT2",
             "stay_start": "2020-01-10", "stay_end": "2020-01-30"},
        ],
        "pmsi/T_HADaaB": [
            {"year": 2020, "ETA_NUM_EPMSI": "030000003", "RHAD_NUM": "H10", "DGN_PAL": "c50.9", "ENT_MOD": "8",
             "SOR_MOD": "8", "ETA_GRP_GHPC": "0412"},
        ],
        "pmsi/T_HADaaC": [  # PAT10: only seen in PMSI
            {"year": 2020, "ETA_NUM_EPMSI": "030000003", "RHAD_NUM": "H10", "NIR_ANO_17": "PAT10",
             "stay_start": "2020-02-01", "stay_end": "2020-02-28"},
        ],
    }


def _referentials() -> dict[str, list[dict]]:
    def ben(patient, dcd=None, ame=None, **cols):
        return {"BEN_NIR_PSA": patient, "BEN_RNG_GEM": 1, "BEN_SEX_COD": 2, "BEN_NAI_ANN": 1950, "BEN_NAI_MOI": 6,
                "BEN_DCD_DTE": dcd, "BEN_DCD_AME": ame, **cols}

    return {
        "IR_BEN_R": [
            ben("PAT1", "1600-01-01", 160001),                       # no death; sex and birth win over DCIR
            ben("PAT2", "2020-05-01", 202005),
            ben("PAT3", "2020-05-01", 202005),
            ben("PAT4", "2020-05-01", 202005, BEN_IDT_ANO="IDT4"),   # CepiDc 7 days later
            ben("PAT5", "2020-05-01", 160001),                       # BEN_DCD_AME 160001: no death
            ben("PAT6", "2020-05-01", 202005),
            ben("PAT7", None, None, BEN_NAI_ANN=1600, BEN_NAI_MOI=None),  # birth year 1600: unknown
            ben("PAT9", None, None, BEN_NAI_ANN=1600, BEN_NAI_MOI=None),  # ... but DCIR has it
        ],
        "KI_CCI_R": [{"BEN_IDT_ANO": "IDT4", "BEN_DCD_DTE": "2020-05-08", "DCD_CIM_COD": "I219"}],
        "IR_IMB_R": [
            {"BEN_NIR_PSA": "PAT1", "MED_MTF_COD": "C50.9", "MED_NCL_IDT": "CIM10", "IMB_ALD_DTD": "2015-01-01",
             "IMB_ALD_DTF": "1600-01-01"},                          # still open
            {"BEN_NIR_PSA": "PAT1", "MED_MTF_COD": "e11.9", "MED_NCL_IDT": "CIM10", "IMB_ALD_DTD": "2016-01-01",
             "IMB_ALD_DTF": "2021-12-31"},
            {"BEN_NIR_PSA": "PAT1", "MED_MTF_COD": "250", "MED_NCL_IDT": "CIM9", "IMB_ALD_DTD": "2016-01-01",
             "IMB_ALD_DTF": "2021-12-31"},                          # not ICD-10
        ],
        "IR_PHA_R": [
            {"PHA_CIP_C13": CIP_PARACETAMOL, "PHA_ATC_C07": "N02BE01", "PHA_UPC_NBR": "16", "PHA_SUB_DOS": "500",
             "PHA_DOS_UNI": "MG"},
            {"PHA_CIP_C13": CIP_BISOPROLOL, "PHA_ATC_C07": "C07AB07", "PHA_UPC_NBR": "30", "PHA_SUB_DOS": "10",
             "PHA_DOS_UNI": "MG"},
        ],
        "REF_ATC_DDD": [
            {"ATC_COD": "N02BE01", "ADM_ROUTE": "O", "DDD_VAL": 3000.0, "DDD_UNI": "MG"},
            {"ATC_COD": "N02BE01", "ADM_ROUTE": "R", "DDD_VAL": 1000.0, "DDD_UNI": "MG"},  # O comes first
            {"ATC_COD": "C07AB07", "ADM_ROUTE": "O", "DDD_VAL": 0.01, "DDD_UNI": "G"},    # not the strength's unit
        ],
    }


def _build(engine, directory: Path) -> dict:
    clean, ingest = directory / "clean", directory / "ingest"
    for path, rows in _clean_zone().items():
        family, table = path.split("/")
        write_table(clean / family, table, rows, types={**AMOUNTS, **STAY_DATES})
    for table, rows in _referentials().items():
        write_table(ingest, table, rows)
    mcfg = load_model_config()
    merge_report = run_merge(engine, clean, directory / "merge", ICFG, mcfg, "test")
    model_report = run_model(engine, directory / "merge", ingest, directory / "model", ICFG, mcfg, "test", clean=clean)
    return {"merge": merge_report, "model_report": model_report, "model": directory / "model",
            "merge_dir": directory / "merge"}


@pytest.fixture
def model(engine, tmp_path_factory):
    return scenario_once("model", engine, tmp_path_factory, _build)


def rows(model, table: str, *columns: str) -> list[tuple]:
    return sorted((tuple(r[c] for c in columns) for r in read_rows(model["model"] / table)), key=repr)


def test_merge_accounts_for_every_item(model):
    t = model["merge"]["tables"]
    assert t["dcir"]["inputs"] == {"ER_PRS_F": 13, "ER_PHA_F": 3, "ER_BIO_F": 0, "ER_TIP_F": 0, "ER_UCD_F": 0,
                                   "ER_CAM_F": 0, "ER_ETE_F": 0}
    assert t["dcir"]["rows"] == 16 and t["dcir"]["items"] == {"drug": 3, "prestation": 13}
    assert t["dcir"]["rows_by_year"] == {2019: 10, 2020: 6}  # PAT1's undated line: its flux month (2020)
    assert t["pmsi"]["items"] == {
        "HAD": {"diagnosis": 1, "stay": 1},
        "MCO": {"diagnosis": 4, "procedure": 1, "stay": 2},
        "SSR": {"diagnosis": 4, "stay": 1},  # MP and AE of both weeks (the model keeps distinct ones)
    }


def test_icd10_codes_normalised(model):
    assert rows(model, "diagnoses", "patient_id", "source", "diagnosis_type", "code", "date", "year") == sorted([
        ("PAT2", "MCO", "DP", "J189", D("2020-04-10"), 2020),
        ("PAT2", "SSR", "MP", "S720", D("2020-01-10"), 2020),   # once, though both weeks carry it
        ("PAT2", "SSR", "AE", "W19", D("2020-01-10"), 2020),
        ("PAT3", "MCO", "DP", "C669", D("2020-05-01"), 2020),   # C66.9; the blank DR gives nothing
        ("PAT3", "MCO", "DAS", "E119", D("2020-05-01"), 2020),  # " e11.9"
        ("PAT3", "MCO", "DAS", "I10", D("2020-05-01"), 2020),
        ("PAT10", "HAD", "DP", "C509", D("2020-02-01"), 2020),
        ("PAT1", "ALD", "ALD", "C509", D("2015-01-01"), 2015),
        ("PAT1", "ALD", "ALD", "E119", D("2016-01-01"), 2016),
    ], key=repr)


def test_ald_end_1600_is_open(model):
    ald = {code: end for code, source, end in rows(model, "diagnoses", "code", "source", "end_date") if source == "ALD"}
    assert ald == {"C509": None, "E119": D("2021-12-31")}
    assert all(end is None for source, end in rows(model, "diagnoses", "source", "end_date") if source != "ALD")


def test_deaths_by_source(model):
    assert rows(model, "deaths_by_source", "patient_id", "source", "death_date") == sorted([
        ("PAT2", "IR_BEN_R", D("2020-05-01")), ("PAT2", "DCIR", D("2020-05-04")),
        ("PAT3", "IR_BEN_R", D("2020-05-01")), ("PAT3", "PMSI", D("2020-05-11")),
        ("PAT4", "IR_BEN_R", D("2020-05-01")), ("PAT4", "KI_CCI_R", D("2020-05-08")),
        ("PAT6", "IR_BEN_R", D("2020-05-01")), ("PAT6", "DCIR", D("2020-05-07")),
    ], key=repr)  # not PAT1 (1600-01-01), PAT5 (BEN_DCD_AME 160001), PAT7 (none)


def test_death_reconciliation(model):
    got = {p: (death, flag) for p, death, flag in rows(model, "patients", "patient_id", "death_date", "incoherent_death")}
    assert got["PAT2"] == (D("2020-05-04"), 0)   # 3 days apart: the latest
    assert got["PAT6"] == (D("2020-05-07"), 0)   # 6 days apart
    assert got["PAT4"] == (D("2020-05-08"), 1)   # exactly 7 days: incoherent
    assert got["PAT3"] == (D("2020-05-11"), 1)   # 10 days
    assert got["PAT1"] == (None, 0) and got["PAT5"] == (None, 0) and got["PAT7"] == (None, 0)


def test_patients_sex_birth_and_last_contact(model):
    got = rows(model, "patients", "patient_id", "sex", "birth_year", "birth_month", "last_contact_date")
    assert [r for r in got if r[0] != "PAT9"] == sorted([
        ("PAT1", 2, 1950, 6, D("2020-06-01")),      # IR_BEN_R wins; last care: the undated line's flux month
        ("PAT2", 2, 1950, 6, D("2020-04-20")),      # DCIR care after the stay ends
        ("PAT3", 2, 1950, 6, D("2020-05-11")),      # stay end after the DCIR care
        ("PAT4", 2, 1950, 6, None),
        ("PAT5", 2, 1950, 6, None),
        ("PAT6", 2, 1950, 6, D("2020-04-01")),
        ("PAT7", 2, None, None, None),              # birth year 1600
        ("PAT8", 1, 1980, None, D("2020-02-01")),   # DCIR only
        ("PAT10", None, None, None, D("2020-02-28")),  # PMSI only
    ], key=repr)


def test_birth_year_1600_in_ir_ben_r_falls_back_to_dcir(model):
    # RULES.md: 1600 codes a missing birth year, and IR_BEN_R wins over DCIR "when both exist": here
    # only DCIR has the year (model.yaml: "IR_BEN_R.BEN_NAI_ANN, else ER_PRS_F.BEN_NAI_ANN").
    got = {p: year for p, year in rows(model, "patients", "patient_id", "birth_year")}
    assert got["PAT9"] == 1947


def test_consults_exclude_majorations_and_participation_forfaitaire(model):
    assert rows(model, "consults", "patient_id", "date", "PRS_NAT_REF", "PSE_SPE_COD") == sorted([
        ("PAT1", D("2019-03-01"), 1111, 1),
        ("PAT1", D("2019-03-04"), 1112, 1),   # NULL CPL_MAJ_TOP / CPL_AFF_COD
        ("PAT1", D("2019-03-05"), 1111, 7),   # CPL_MAJ_TOP 1
        ("PAT2", D("2020-04-20"), 1111, 1),
        ("PAT3", D("2020-03-01"), 1111, 1),
        ("PAT6", D("2020-04-01"), 1111, 1),
        ("PAT8", D("2020-02-01"), 1111, 1),
    ], key=repr)  # not 03-02 (CPL_MAJ_TOP 2), 03-03 (CPL_AFF_COD 16), 03-06 (quantity 0)


def test_drug_dispensations_ddd(model):
    assert rows(model, "drug_dispensations", "patient_id", "date", "cip13", "atc", "quantity", "ddd") == sorted([
        # 2 boxes x 16 tablets x 500 mg / 3000 mg (oral route first) = 5.3333...
        ("PAT1", D("2019-04-01"), str(CIP_PARACETAMOL), "N02BE01", 2, Decimal("5.333")),
        ("PAT1", D("2019-04-01"), str(CIP_BISOPROLOL), "C07AB07", 1, None),   # DDD in G, strength in MG
        ("PAT1", D("2019-04-01"), str(CIP_UNKNOWN), None, 1, None),           # not in IR_PHA_R
    ], key=repr)
    assert column_types(model["model"] / "drug_dispensations")["ddd"] == "DECIMAL(18,3)"


def test_stays_procedures_and_cmuc(model):
    assert rows(model, "stays", "patient_id", "source", "stay_id", "start_date", "end_date", "SOR_MOD", "ghm") == sorted([
        ("PAT2", "MCO", "R2", D("2020-04-10"), D("2020-04-15"), "8", "04M05T"),
        ("PAT2", "SSR", "S2", D("2020-01-10"), D("2020-01-30"), "8", "0811A1"),
        ("PAT3", "MCO", "R3", D("2020-05-01"), D("2020-05-11"), "9", "11M12T"),
        ("PAT10", "HAD", "H10", D("2020-02-01"), D("2020-02-28"), "8", "0412"),
    ], key=repr)
    assert rows(model, "procedures", "patient_id", "code", "date", "source") == [
        ("PAT3", "JCFA001", D("2020-05-03"), "MCO")]   # stay start + ENT_DAT_DEL days
    assert rows(model, "cmuc", "patient_id", "year") == [("PAT1", 2019)]
