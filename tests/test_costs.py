"""The medico-economic model's rules (sql/model/costs_*.sql, config/model.yaml `costs`), one test per
rule, on a tiny hand-built clean zone, on both engines. The generator-truth comparison of the whole
model is in test_pipeline_steps.py (every truth table, the cost tables included).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from spark_jobs.merge import load_model_config, run_merge
from spark_jobs.model import cost_params, load_model_schema, run_model
from spark_jobs.steprun import StepError
from test_clean_rules import keys, read_rows, scenario_once, write_table
from test_model_rules import AMOUNTS, ICFG, STAY_DATES

D = dt.date.fromisoformat
E = Decimal


def claim(n: int, patient: str, care: str, nature: int, paid="30.00", base="25.00", amo="17.50", cpl="0.00",
          end: str | None = None, **cols) -> dict:
    """A cleaned ER_PRS_F claim (net of régularisations) `n` of `patient`, care date `care`."""
    return {**keys(n, "2020-09-01"), "BEN_NIR_PSA": patient, "BEN_RNG_GEM": 1, "EXE_SOI_DTD": care,
            "EXE_SOI_DTF": end or care, "PRS_NAT_REF": nature, "PFS_EXE_NUM": f"PS{n}", "CPL_MAJ_TOP": 0,
            "CPL_AFF_COD": 0, "PRS_ACT_QTE": 1, "PRS_PAI_MNT": paid, "BSE_REM_BSE": base, "BSE_REM_MNT": amo,
            "CPL_REM_MNT": cpl, **cols}


def ete(n: int, finess: str) -> dict:
    return {**keys(n, "2020-09-01"), "ETB_EXE_FIN": finess, "ETE_IND_TAA": 2}


def stay_b(year, eta, rsa, ent="8", sor="8", typ="0"):
    return {"year": year, "ETA_NUM": eta, "RSA_NUM": rsa, "ENT_MOD": ent, "SOR_MOD": sor, "GRG_GHM": "04M05T",
            "TYP_GEN_RSA": typ}


def stay_c(year, eta, rsa, patient, start, end, key=("ETA_NUM", "RSA_NUM")):
    return {"year": year, key[0]: eta, key[1]: rsa, "NIR_ANO_17": patient, "stay_start": start, "stay_end": end}


def _clean_zone() -> dict[str, list[dict]]:
    return {
        "dcir/ER_PRS_F": [
            # PAT1: one claim per outpatient category (consult reimbursed = AMO + CMU-C complementary)
            claim(1, "PAT1", "2020-01-10", 1110, cpl="7.50"),
            claim(2, "PAT1", "2020-01-11", 1352),
            claim(3, "PAT1", "2020-01-12", 3313, paid="12.00", base="12.00", amo="7.80"),
            claim(4, "PAT1", "2020-01-13", 3211),
            claim(5, "PAT1", "2020-01-14", 3512),
            claim(6, "PAT1", "2020-01-15", 4213, paid="80.00", base="80.00", amo="52.00"),   # VSL: transport
            claim(7, "PAT1", "2020-01-16", 3111),                                            # nurse: other
            claim(8, "PAT1", "2019-12-31", 1110),                                            # counts in 2019
            # PAT2: a private clinic stay billed in DCIR (matched), and claims that must not match it
            claim(10, "PAT2", "2020-03-01", 2211, paid="900.00", base="900.00", amo="720.00", end="2020-03-05"),
            claim(11, "PAT2", "2020-06-01", 2211, paid="300.00", base="300.00", amo="240.00"),  # no stay then
            claim(12, "PAT2", "2020-03-02", 2211, paid="50.00", base="50.00", amo="40.00"),     # another clinic
            claim(13, "PAT2", "2020-03-04", 1110),                                              # no establishment row
            claim(14, "PAT3", "2020-03-02", 2211, paid="70.00", base="70.00", amo="56.00"),     # another patient
        ],
        "dcir/ER_ETE_F": [ete(10, "CLINIC001"), ete(11, "CLINIC001"), ete(12, "CLINIC002"), ete(14, "CLINIC001")],
        "pmsi/T_MCOaaB": [
            stay_b(2020, "PUB000001", "M1"),                  # valued: 3000.00 + its drug and device
            stay_b(2020, "PUB000001", "M2"),                  # VALO '0': not valued
            stay_b(2020, "PUB000001", "M3"),                  # VALO missing
            stay_b(2020, "PUB000001", "M4", ent="0"),         # service for another establishment
            stay_b(2020, "PUB000001", "M5", sor="0"),
            stay_b(2016, "PUB000001", "M6", typ="1"),         # an automatically generated RSA (from 2015)
            stay_b(2014, "PUB000001", "M7", typ="1"),         # ... not a criterion before 2015
            stay_b(2020, "PUB000001", "M8"),                  # spans new year: counts in 2020
            stay_b(2020, "CLINIC001", "P1"),                  # private clinic: no VALO row, valued by DCIR
        ],
        "pmsi/T_MCOaaC": [
            stay_c(2020, "PUB000001", "M1", "PAT4", "2020-02-01", "2020-02-05"),
            stay_c(2020, "PUB000001", "M2", "PAT4", "2020-03-01", "2020-03-02"),
            stay_c(2020, "PUB000001", "M3", "PAT4", "2020-04-01", "2020-04-02"),
            stay_c(2020, "PUB000001", "M4", "PAT5", "2020-05-01", "2020-05-01"),
            stay_c(2020, "PUB000001", "M5", "PAT5", "2020-05-02", "2020-05-02"),
            stay_c(2016, "PUB000001", "M6", "PAT5", "2016-05-01", "2016-05-03"),
            stay_c(2014, "PUB000001", "M7", "PAT5", "2014-05-01", "2014-05-03"),
            stay_c(2020, "PUB000001", "M8", "PAT4", "2019-12-30", "2020-01-02"),
            stay_c(2020, "CLINIC001", "P1", "PAT2", "2020-03-01", "2020-03-05"),
        ],
        "pmsi/T_MCOaaVALO": [
            {"year": 2020, "ETA_NUM": "PUB000001", "RSA_NUM": "M1", "VALO": "1", "MNT_TOT_AM": 3000.0},
            {"year": 2020, "ETA_NUM": "PUB000001", "RSA_NUM": "M2", "VALO": "0", "MNT_TOT_AM": 0.0},
            {"year": 2020, "ETA_NUM": "PUB000001", "RSA_NUM": "M3", "VALO": None, "MNT_TOT_AM": 0.0},
            {"year": 2020, "ETA_NUM": "PUB000001", "RSA_NUM": "M4", "VALO": "1", "MNT_TOT_AM": 111.0},
            {"year": 2020, "ETA_NUM": "PUB000001", "RSA_NUM": "M5", "VALO": "1", "MNT_TOT_AM": 222.0},
            {"year": 2016, "ETA_NUM": "PUB000001", "RSA_NUM": "M6", "VALO": "1", "MNT_TOT_AM": 333.0},
            {"year": 2014, "ETA_NUM": "PUB000001", "RSA_NUM": "M7", "VALO": "1", "MNT_TOT_AM": 444.44},
            {"year": 2020, "ETA_NUM": "PUB000001", "RSA_NUM": "M8", "VALO": "1", "MNT_TOT_AM": 1234.56},
        ],
        "pmsi/T_MCOaaMED": [
            {"year": 2020, "ETA_NUM": "PUB000001", "RSA_NUM": "M1", "UCD_UCD_COD": "9391234", "ADM_NBR": 1.5,
             "ADM_NBR_PRI": 150.3, "DELAI": 2},
            {"year": 2020, "ETA_NUM": "PUB000001", "RSA_NUM": "M2", "UCD_UCD_COD": "9391234", "ADM_NBR": 1.0,
             "ADM_NBR_PRI": 100.2, "DELAI": 0},               # its stay is not valued: not counted
        ],
        "pmsi/T_MCOaaDMIP": [
            {"year": 2020, "ETA_NUM": "PUB000001", "RSA_NUM": "M1", "LPP_COD": " 3100000", "NBR_POS": 2,
             "NBR_POS_PRI": 400.0, "DELAI": 0},
        ],
        "pmsi/T_MCOaaCSTC": [
            stay_c(2020, "PUB000001", "000000001", "PAT6", "2020-07-01", "2020-07-01", key=("ETA_NUM", "SEQ_NUM")),
            stay_c(2020, "PUB000001", "000000002", "PAT6", "2020-07-02", "2020-07-02", key=("ETA_NUM", "SEQ_NUM")),
            stay_c(2020, "PUB000001", "000000003", "PAT6", "2020-07-03", "2020-07-03", key=("ETA_NUM", "SEQ_NUM")),
        ],
        "pmsi/T_MCOaaVALOACE": [
            {"year": 2020, "ETA_NUM": "PUB000001", "SEQ_NUM": "000000001", "valo": "1", "mnt_br": 25.0, "mnt_remb": 17.5},
            {"year": 2020, "ETA_NUM": "PUB000001", "SEQ_NUM": "000000002", "valo": "0", "mnt_br": 25.0, "mnt_remb": 17.5},
            {"year": 2020, "ETA_NUM": "PUB000001", "SEQ_NUM": "000000003", "valo": None, "mnt_br": 25.0, "mnt_remb": 17.5},
        ],
        "pmsi/T_SSRaaB": [
            {"year": 2020, "ETA_NUM": "SSR000001", "RHA_NUM": s, "RHS_NUM": "1", "ENT_MOD": "7", "SOR_MOD": "8",
             "GRG_GME": "0801A1"} for s in ("S1", "S2")],
        "pmsi/T_SSRaaC": [
            stay_c(2020, "SSR000001", "S1", "PAT7", "2020-08-01", "2020-08-20", key=("ETA_NUM", "RHA_NUM")),
            stay_c(2020, "SSR000001", "S2", "PAT7", "2020-09-01", "2020-09-20", key=("ETA_NUM", "RHA_NUM")),
        ],
        "pmsi/T_SSRaaSTC": [
            {"year": 2020, "ETA_NUM": "SSR000001", "RHA_NUM": "S1", "SEJ_FAC_AM": "1", "TOT_MNT_AM": 5000.0,
             "REM_BAS_MNT": 6000.0},
            {"year": 2020, "ETA_NUM": "SSR000001", "RHA_NUM": "S2", "SEJ_FAC_AM": "0", "TOT_MNT_AM": 0.0,
             "REM_BAS_MNT": 0.0},                             # not billable to the Assurance maladie
        ],
        "pmsi/T_HADaaB": [{"year": 2020, "ETA_NUM_EPMSI": "HAD000001", "RHAD_NUM": "H1", "ENT_MOD": "8",
                           "SOR_MOD": "8", "ETA_GRP_GHPC": "0412"}],
        "pmsi/T_HADaaC": [stay_c(2020, "HAD000001", "H1", "PAT7", "2020-10-01", "2020-10-30",
                                 key=("ETA_NUM_EPMSI", "RHAD_NUM"))],
        "pmsi/T_HADaaSTC": [{"year": 2020, "ETA_NUM_EPMSI": "HAD000001", "RHAD_NUM": "H1", "FAC_SEJ_AM": "1",
                             "TOT_MNT_AM": 2000.0, "REM_BAS_MNT": 2100.0}],
        "pmsi/T_RIPaaRSA": [
            {"year": 2020, "ETA_NUM_EPMSI": "PSY000001", "RIP_NUM": r, "SEQ_SEQ_NUM": "1", "ENT_MOD": "8",
             "SOR_MOD": "8"} for r in ("R1", "R2")],
        "pmsi/T_RIPaaC": [
            stay_c(2020, "PSY000001", "R1", "PAT8", "2020-02-01", "2020-02-21", key=("ETA_NUM_EPMSI", "RIP_NUM")),
            stay_c(2020, "PSY000001", "R2", "PAT8", "2020-04-01", "2020-04-21", key=("ETA_NUM_EPMSI", "RIP_NUM")),
        ],
        "pmsi/T_RIPaaSTC": [
            {"year": 2020, "ETA_NUM_EPMSI": "PSY000001", "RIP_NUM": "R1", "SEJ_FAC_AM": "1", "TOT_MNT_AM": 7000.0,
             "REM_BAS_MNT": 7500.0},
            {"year": 2020, "ETA_NUM_EPMSI": "PSY000001", "RIP_NUM": "R2", "SEJ_FAC_AM": "0", "TOT_MNT_AM": 0.0,
             "REM_BAS_MNT": 0.0},
        ],
    }


def _build(engine, directory):
    clean, ingest = directory / "clean", directory / "ingest"
    for path, rows in _clean_zone().items():
        family, table = path.split("/")
        write_table(clean / family, table, rows, types={**AMOUNTS, **STAY_DATES})
    write_table(ingest, "IR_BEN_R", [{"BEN_NIR_PSA": "PAT1", "BEN_RNG_GEM": 1, "BEN_SEX_COD": 2, "BEN_NAI_ANN": 1950}])
    mcfg = load_model_config()
    run_merge(engine, clean, directory / "merge", ICFG, mcfg, "test")
    report = run_model(engine, directory / "merge", ingest, directory / "model", ICFG, mcfg, "test", clean=clean)
    return {"report": report, "model": directory / "model"}


@pytest.fixture
def costs(engine, tmp_path_factory):
    return scenario_once("costs", engine, tmp_path_factory, _build)


def table(costs, name: str, *columns: str) -> list[tuple]:
    return sorted((tuple(r[c] for c in columns) for r in read_rows(costs["model"] / name)), key=repr)


def hospital(costs, *patients):
    return [r for r in table(costs, "costs_hospital_stays", "patient_id", "source", "stay_id", "valuation", "base",
                             "reimbursed", "end_date") if r[0] in patients]


def test_outpatient_categories_by_nature(costs):
    rows = [r for r in table(costs, "costs_outpatient", "patient_id", "date", "PRS_NAT_REF", "category", "paid", "base",
                             "reimbursed") if r[0] == "PAT1"]
    assert rows == sorted([
        ("PAT1", D("2020-01-10"), 1110, "consult", E("30.00"), E("25.00"), E("25.00")),  # AMO 17.50 + CMU-C 7.50
        ("PAT1", D("2020-01-11"), 1352, "procedure", E("30.00"), E("25.00"), E("17.50")),
        ("PAT1", D("2020-01-12"), 3313, "drug", E("12.00"), E("12.00"), E("7.80")),
        ("PAT1", D("2020-01-13"), 3211, "biology", E("30.00"), E("25.00"), E("17.50")),
        ("PAT1", D("2020-01-14"), 3512, "device", E("30.00"), E("25.00"), E("17.50")),
        ("PAT1", D("2020-01-15"), 4213, "transport", E("80.00"), E("80.00"), E("52.00")),
        ("PAT1", D("2020-01-16"), 3111, "other", E("30.00"), E("25.00"), E("17.50")),
        ("PAT1", D("2019-12-31"), 1110, "consult", E("30.00"), E("25.00"), E("17.50")),
    ], key=repr)


def test_private_clinic_claims_count_once_as_their_stay(costs):
    """PMSI-DCIR matching: the claim at the stay's clinic, inside its dates, is the stay's cost and not
    outpatient care; the same patient's claims elsewhere or at other times, and another patient's
    claim at that clinic during the stay, stay outpatient."""
    outpatient = [r for r in table(costs, "costs_outpatient", "patient_id", "date", "reimbursed") if r[0] in ("PAT2", "PAT3")]
    assert outpatient == sorted([("PAT2", D("2020-06-01"), E("240.00")), ("PAT2", D("2020-03-02"), E("40.00")),
                                 ("PAT2", D("2020-03-04"), E("17.50")), ("PAT3", D("2020-03-02"), E("56.00"))], key=repr)
    assert hospital(costs, "PAT2") == [("PAT2", "MCO", "P1", "DCIR", E("900.00"), E("720.00"), D("2020-03-05"))]


def test_mco_stays_valued_by_valo_with_exclusions(costs):
    assert hospital(costs, "PAT4", "PAT5") == sorted([
        ("PAT4", "MCO", "M1", "PMSI", None, E("3000.00"), D("2020-02-05")),
        ("PAT4", "MCO", "M8", "PMSI", None, E("1234.56"), D("2020-01-02")),
        ("PAT5", "MCO", "M7", "PMSI", None, E("444.44"), D("2014-05-03")),   # TYP_GEN_RSA only from 2015
    ], key=repr)  # not M2 (VALO 0), M3 (no VALO), M4/M5 (mode 0), M6 (TYP_GEN_RSA 1 in 2016)


def test_ace_visits_valued_when_valued(costs):
    assert hospital(costs, "PAT6") == [("PAT6", "ACE", "000000001", "PMSI", E("25.00"), E("17.50"), D("2020-07-01"))]


def test_ssr_had_rip_when_billable(costs):
    assert hospital(costs, "PAT7", "PAT8") == sorted([
        ("PAT7", "SSR", "S1", "PMSI", E("6000.00"), E("5000.00"), D("2020-08-20")),
        ("PAT7", "HAD", "H1", "PMSI", E("2100.00"), E("2000.00"), D("2020-10-30")),
        ("PAT8", "RIP", "R1", "PMSI", E("7500.00"), E("7000.00"), D("2020-02-21")),
    ], key=repr)


def test_extras_on_top_of_valued_stays_only(costs):
    assert table(costs, "costs_hospital_extras", "patient_id", "stay_id", "date", "kind", "code", "quantity", "amount") == [
        ("PAT4", "M1", D("2020-02-01"), "device", "3100000", E("2.000"), E("400.00")),   # LPP code trimmed
        ("PAT4", "M1", D("2020-02-03"), "drug", "9391234", E("1.500"), E("150.30")),     # stay start + 2 days
    ]


def test_patient_year_summary(costs):
    rows = {(r["patient_id"], r["year"]): r for r in read_rows(costs["model"] / "costs_patient_year")}
    pat1 = rows[("PAT1", 2020)]
    assert (pat1["consult"], pat1["procedure"], pat1["drug"], pat1["biology"], pat1["device"], pat1["transport"],
            pat1["other"]) == (E("25.00"), E("17.50"), E("7.80"), E("17.50"), E("17.50"), E("52.00"), E("17.50"))
    assert pat1["total"] == E("154.80") and pat1["hospital_mco"] == E("0.00")
    assert rows[("PAT1", 2019)]["total"] == rows[("PAT1", 2019)]["consult"] == E("17.50")
    pat4 = rows[("PAT4", 2020)]  # M8 ends in 2020 although it starts in 2019
    assert (pat4["hospital_mco"], pat4["hospital_extras"], pat4["total"]) == (E("4234.56"), E("550.30"), E("4784.86"))
    assert ("PAT4", 2019) not in rows
    assert rows[("PAT2", 2020)]["hospital_mco"] == E("720.00") and rows[("PAT2", 2020)]["other"] == E("280.00")
    assert rows[("PAT6", 2020)]["hospital_ace"] == E("17.50")
    assert (rows[("PAT7", 2020)]["hospital_ssr"], rows[("PAT7", 2020)]["hospital_had"]) == (E("5000.00"), E("2000.00"))
    assert rows[("PAT8", 2020)]["hospital_rip"] == E("7000.00")
    for r in rows.values():
        parts = [v for k, v in r.items() if k not in ("patient_id", "year", "total")]
        assert r["total"] == sum(parts)


def test_rip_stays_are_stays(costs):
    stays = table(costs, "stays", "patient_id", "source", "stay_id", "ghm")
    assert ("PAT8", "RIP", "R1", None) in stays and ("PAT8", "RIP", "R2", None) in stays


def test_report_times_the_medico_economic_model(costs):
    report = costs["report"]
    assert report["medico_economic_seconds"] >= 0
    assert report["tables"]["costs_outpatient"]["rows"] == 12


def test_patient_year_columns_must_match_the_categories():
    mcfg = load_model_config()
    mcfg["costs"]["outpatient_categories"] = {**mcfg["costs"]["outpatient_categories"], "dental": [[1500, 1599]]}
    with pytest.raises(StepError, match="costs_patient_year columns"):
        cost_params(mcfg, load_model_schema())
