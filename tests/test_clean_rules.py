"""Cleaning rules (spark_jobs/clean.py, sql/clean/, config/clean.yaml) on small hand-built ingest
zones, on both engines.

Each scenario (one ingest zone, one run of the clean step) is built once per engine and shared by
the tests that check it (`scenario_once`), so that the Spark engine pays for few step runs.
"""

from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from spark_jobs.clean import load_clean_config, run_clean
from spark_jobs.delivery import IngestConfig
from spark_jobs.steprun import parquet_files, register_table, schema_columns

ICFG = IngestConfig.load(None)
D = dt.date.fromisoformat


# ---------------------------------------------------------------------------------------------------
# Building zones and reading outputs
# ---------------------------------------------------------------------------------------------------

def _literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    if isinstance(value, dt.date):
        return f"'{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def write_table(zone: Path, table: str, rows: list[dict], types: dict[str, str] | None = None,
                hive: bool = False) -> None:
    """Write `rows` as `<zone>/<table>/part-00000.parquet`, each column typed as ingest writes it
    (`schema_columns`), or as `types` says (clean-zone types, extra columns). Only the columns the
    rows name are written; the steps fill in the others with NULL. With `hive` (yearly tables), the
    rows of each year go to `<zone>/<table>/year=<year>/part-00000.parquet`, without a `year` column."""
    if hive:  # every year's file with the same columns (those of any row)
        names = list(dict.fromkeys(c for r in rows for c in r if c != "year"))
        for year in sorted({r["year"] for r in rows}):
            write_table(zone / table, f"year={year}", [{c: r.get(c) for c in names} for r in rows if r["year"] == year],
                        types={**dict(schema_columns(ICFG, table)), **(types or {})})
        return
    schema = dict(schema_columns(ICFG, table)) if table in ICFG.tables else {}
    schema.update(types or {})
    names: list[str] = []
    for row in rows:
        names += [c for c in row if c not in names]
    unknown = [c for c in names if c not in schema]
    assert not unknown, f"{table}: columns not in the schema: {unknown}"
    selects = [
        "SELECT " + ", ".join(f'CAST({_literal(row.get(c))} AS {schema[c]}) AS "{c}"' for c in names)
        for row in rows
    ]
    directory = zone / table
    directory.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"COPY ({' UNION ALL '.join(selects)}) TO '{directory / 'part-00000.parquet'}' (FORMAT parquet)")
    con.close()


def write_zone(zone: Path, tables: dict[str, list[dict]], hive: tuple[str, ...] = ()) -> dict[str, int]:
    for table, rows in tables.items():
        write_table(zone, table, rows, hive=table in hive)
    return {t: len(rows) for t, rows in tables.items()}


def read_rows(directory: Path) -> list[dict]:
    """Rows of a Parquet directory as dicts (no rows when it has no files)."""
    if not parquet_files(directory):
        return []
    con = duckdb.connect()
    cur = con.execute(f"SELECT * FROM read_parquet('{directory}/**/*.parquet', hive_partitioning = false)")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    con.close()
    return rows


def column_types(directory: Path) -> dict[str, str]:
    con = duckdb.connect()
    types = {name: type_ for name, type_, *_ in con.execute(
        f"DESCRIBE SELECT * FROM read_parquet('{directory}/**/*.parquet', hive_partitioning = false)").fetchall()}
    con.close()
    return types


_RUNS: dict[tuple[str, str], object] = {}


def scenario_once(name: str, engine, tmp_path_factory, build):
    """`build(engine, directory)` once per scenario and engine; later calls get its result (or its error)."""
    key = (name, engine.name)
    if key not in _RUNS:
        try:
            _RUNS[key] = build(engine, tmp_path_factory.mktemp(f"{name}-{engine.name}"))
        except Exception as exc:  # noqa: BLE001 - re-raised below, and for the other tests of the scenario
            _RUNS[key] = exc
    result = _RUNS[key]
    if isinstance(result, Exception):
        raise result
    return result


def check_accounting(report: dict, rows_in: dict[str, int], out: Path) -> None:
    """Per table: rows in = rows out + rows removed per rule, against what the test wrote and what
    the step wrote, and the per-rule section agrees with the per-table one."""
    for table, n in rows_in.items():
        t = report["tables"][table]
        written = len(read_rows(out / table))
        assert t["rows_read"] == n, table
        assert t["rows"] == written, table
        assert n == written + sum(t["dropped_by_rule"].values()), (table, t)
        assert t["dropped"] == sum(t["dropped_by_rule"].values()), table
        for rule, count in t["dropped_by_rule"].items():
            assert report["dropped_by_rule"][rule][table] == count, (rule, table)
    for rule, per_table in report["dropped_by_rule"].items():
        for table, count in per_table.items():
            assert report["tables"][table]["dropped_by_rule"][rule] == count, (rule, table)


# ---------------------------------------------------------------------------------------------------
# DCIR
# ---------------------------------------------------------------------------------------------------

def keys(n: int, flux: str = "2020-02-01", **over) -> dict:
    """The 9 DCIR join keys of claim line `n` (DCT_ORD_NUM), in flux month `flux`."""
    k = {"FLX_DIS_DTD": flux, "FLX_TRT_DTD": flux, "FLX_EMT_TYP": 1, "FLX_EMT_NUM": 7, "FLX_EMT_ORD": 0,
         "ORG_CLE_NUM": "01C731220", "DCT_ORD_NUM": n, "PRS_ORD_NUM": 1, "REM_TYP_AFF": 1}
    k.update(over)
    return k


def line(k: dict, patient: str, **cols) -> dict:
    """An ER_PRS_F line with keys `k`; every line of a test has its own régularisation group unless
    it says otherwise (the group columns are the patient, dates, nature, provider and qualifiers)."""
    row = {**k, "BEN_NIR_PSA": patient, "BEN_RNG_GEM": 1, "EXE_SOI_DTD": "2020-01-15", "EXE_SOI_DTF": "2020-01-15",
           "PRS_NAT_REF": 1111, "PFS_EXE_NUM": "PS0001", "ETB_PRE_FIN": "ETB001", "CPL_MAJ_TOP": 0,
           "CPL_AFF_COD": 0, "PRS_ACT_QTE": 1, "PRS_ACT_NBR": 1, "PRS_PAI_MNT": 25.0, "BSE_REM_MNT": 17.5,
           "BSE_PRS_NAT": 1, "DPN_QLF": 0, "PRS_DPN_QLP": 0}
    row.update(cols)
    return row


ETE_KEYS = keys(6)


def _dcir_rules_zone() -> dict[str, list[dict]]:
    return {
        "ER_PRS_F": [
            line(keys(1), "P01", DPN_QLF=71),                           # for information
            line(keys(2), "P02", DPN_QLF=None, PRS_DPN_QLP=None, BSE_PRS_NAT=None),  # NULLs are kept
            line(keys(3), "P03", PRS_DPN_QLP=71),                       # strict variant
            line(keys(4), "P04", DPN_QLF=70, PRS_DPN_QLP=72),           # other qualifiers: kept
            line(keys(5), "P05", BSE_PRS_NAT=0),                        # nature "sans objet"
            line(ETE_KEYS, "P06"),                                      # its ER_ETE_F row has ETE_IND_TAA 1
            line(keys(7), "P07"),                                       # ER_ETE_F row, ETE_IND_TAA NULL
            line(keys(8), "P08"),                                       # ER_ETE_F row, ETE_IND_TAA 2
            line(keys(9), "P09", DPN_QLF=71, BSE_PRS_NAT=0),            # 3 rules: counted under the first
            line(keys(10), "P10", PRS_DPN_QLP=71, BSE_PRS_NAT=0),       # strict first, then BSE_PRS_NAT
            line(keys(6, REM_TYP_AFF=2), "P11"),                        # P06's keys but one: not its ETE row
            line(keys(12), "P12"),                                      # two ER_ETE_F rows, one with 1
        ],
        "ER_ETE_F": [
            {**ETE_KEYS, "ETB_EXE_FIN": "E06", "ETE_IND_TAA": 1},
            {**keys(7), "ETB_EXE_FIN": "E07", "ETE_IND_TAA": None},
            {**keys(8), "ETB_EXE_FIN": "E08", "ETE_IND_TAA": 2},
            {**keys(9), "ETB_EXE_FIN": "E09", "ETE_IND_TAA": 1},
            {**keys(6, REM_TYP_AFF=2), "ETB_EXE_FIN": "E11", "ETE_IND_TAA": None},
            {**keys(12), "ETB_EXE_FIN": "E12a", "ETE_IND_TAA": None},
            {**keys(12), "ETB_EXE_FIN": "E12b", "ETE_IND_TAA": 1},
        ],
        "ER_BIO_F": [
            {**ETE_KEYS, "BIO_PRS_IDE": 1006, "BIO_ACT_QSN": 1},        # goes with its line (ETE rule)
            {**keys(7), "BIO_PRS_IDE": 1007, "BIO_ACT_QSN": 1},         # kept
            {**keys(1), "BIO_PRS_IDE": 1001, "BIO_ACT_QSN": 2},         # goes with its line (for information)
            {**keys(99), "BIO_PRS_IDE": 1099, "BIO_ACT_QSN": 1},        # no such line
        ],
        "ER_PHA_F": [
            {**ETE_KEYS, "PHA_PRS_C13": 3400930000006, "PHA_ACT_QSN": 1, "PHA_ACT_PRU": 4.5},
            {**keys(2), "PHA_PRS_C13": 3400930000002, "PHA_ACT_QSN": 1, "PHA_ACT_PRU": 4.5},
        ],
    }


def _run_dcir(engine, directory: Path, tables: dict[str, list[dict]], ccfg: dict | None = None,
              zone: Path | None = None) -> dict:
    if zone is None:
        zone = directory / "ingest"
        rows_in = write_zone(zone, tables)
    else:
        rows_in = {t: len(r) for t, r in tables.items()}
    out = directory / "clean" / "dcir"
    report = run_clean(engine, "dcir", zone, out, ICFG, ccfg or load_clean_config(), "test")
    return {"report": report, "out": out, "rows_in": rows_in, "zone": zone}


@pytest.fixture
def dcir_rules(engine, tmp_path_factory):
    return scenario_once("dcir_rules", engine, tmp_path_factory,
                     lambda eng, d: _run_dcir(eng, d, _dcir_rules_zone()))


def _patients(out: Path) -> set[str]:
    return {r["BEN_NIR_PSA"] for r in read_rows(out / "ER_PRS_F")}


def test_dcir_line_rules_keep_and_drop(dcir_rules):
    assert _patients(dcir_rules["out"]) == {"P02", "P04", "P07", "P08", "P11"}
    t = dcir_rules["report"]["tables"]["ER_PRS_F"]
    assert t["dropped_by_rule"] == {"dcir_for_information": 2, "dcir_for_information_strict": 2,
                                    "dcir_bse_prs_nat_0": 1, "dcir_ete_ind_taa_1": 2}


def test_dcir_null_qualifiers_are_kept(dcir_rules):
    kept = {r["BEN_NIR_PSA"]: r for r in read_rows(dcir_rules["out"] / "ER_PRS_F")}
    assert kept["P02"]["DPN_QLF"] is None and kept["P02"]["PRS_DPN_QLP"] is None and kept["P02"]["BSE_PRS_NAT"] is None


def test_dcir_rule_order_counts_a_line_under_its_first_rule(dcir_rules):
    # P09 matches dcir_for_information, dcir_bse_prs_nat_0 and dcir_ete_ind_taa_1; P10 the strict rule
    # and dcir_bse_prs_nat_0: each is counted once, under the first rule of config/clean.yaml.
    by_rule = dcir_rules["report"]["dropped_by_rule"]
    assert by_rule["dcir_for_information"]["ER_PRS_F"] == 2       # P01, P09
    assert by_rule["dcir_for_information_strict"]["ER_PRS_F"] == 2  # P03, P10
    assert by_rule["dcir_bse_prs_nat_0"]["ER_PRS_F"] == 1          # P05 only
    assert by_rule["dcir_ete_ind_taa_1"]["ER_PRS_F"] == 2          # P06, P12 (not P09)


def test_dcir_ete_ind_taa_1_takes_the_line_and_its_detail_rows(dcir_rules):
    out, report = dcir_rules["out"], dcir_rules["report"]
    # ER_ETE_F: the rows of P06 (1), P12 (NULL and 1) go with their line; P09's under its own line
    # rule; P07 (NULL), P08 (2) and P11 (same keys as P06 but REM_TYP_AFF) are kept.
    assert sorted(r["ETB_EXE_FIN"] for r in read_rows(out / "ER_ETE_F")) == ["E07", "E08", "E11"]
    assert report["tables"]["ER_ETE_F"]["dropped_by_rule"] == {"dcir_ete_ind_taa_1": 3, "dcir_for_information": 1}
    assert report["tables"]["ER_PHA_F"]["dropped_by_rule"] == {"dcir_ete_ind_taa_1": 1}
    assert [r["PHA_PRS_C13"] for r in read_rows(out / "ER_PHA_F")] == [3400930000002]
    assert sorted(r["BIO_PRS_IDE"] for r in read_rows(out / "ER_BIO_F")) == [1007]
    assert report["tables"]["ER_BIO_F"]["dropped_by_rule"] == {
        "dcir_ete_ind_taa_1": 1, "dcir_for_information": 1, "dcir_detail_without_line": 1}


def test_dcir_detail_row_without_line(dcir_rules):
    assert dcir_rules["report"]["dropped_by_rule"]["dcir_detail_without_line"] == {"ER_BIO_F": 1}
    assert 1099 not in {r["BIO_PRS_IDE"] for r in read_rows(dcir_rules["out"] / "ER_BIO_F")}


def test_dcir_accounting(dcir_rules):
    report = dcir_rules["report"]
    check_accounting(report, dcir_rules["rows_in"], dcir_rules["out"])
    for table in ("ER_TIP_F", "ER_UCD_F", "ER_CAM_F"):  # not delivered: empty, nothing removed
        assert report["tables"][table]["rows_read"] == 0 and report["tables"][table]["rows"] == 0
    assert report["totals"] == {"rows_read": 25, "rows_written": 10, "dropped_by_rule": 15}
    assert report["rules_applied"] == sorted(report["dropped_by_rule"])


def test_dcir_strict_rule_disabled_keeps_the_line(engine, dcir_rules, tmp_path):
    ccfg = copy.deepcopy(load_clean_config())
    ccfg["dcir"]["line_rules"]["dcir_for_information_strict"]["enabled"] = False
    run = _run_dcir(engine, tmp_path, _dcir_rules_zone(), ccfg=ccfg, zone=dcir_rules["zone"])
    assert _patients(run["out"]) == {"P02", "P03", "P04", "P07", "P08", "P11"}
    report = run["report"]
    assert "dcir_for_information_strict" not in report["dropped_by_rule"]
    # P10 now falls to the next rule it matches.
    assert report["tables"]["ER_PRS_F"]["dropped_by_rule"] == {
        "dcir_for_information": 2, "dcir_bse_prs_nat_0": 2, "dcir_ete_ind_taa_1": 2}
    check_accounting(report, run["rows_in"], run["out"])


# --- régularisations -------------------------------------------------------------------------------

JAN, FEB, MAR = "2020-01-01", "2020-02-01", "2020-03-01"


def _regularisation_zone() -> dict[str, list[dict]]:
    return {
        "ER_PRS_F": [
            # A: full cancellation in a later flux.
            line(keys(1, JAN), "PA", PRS_ACT_QTE=1, PRS_PAI_MNT=25.0, BSE_REM_MNT=17.5),
            line(keys(1, FEB), "PA", PRS_ACT_QTE=-1, PRS_PAI_MNT=-25.0, BSE_REM_MNT=-17.5),
            # B: partial cancellation (3 acts, 1 cancelled): one line, net sums, B1's keys.
            line(keys(2, JAN), "PB", PRS_ACT_QTE=3, PRS_ACT_NBR=3, PRS_PAI_MNT=10.10, BSE_REM_MNT=7.07),
            line(keys(2, FEB), "PB", PRS_ACT_QTE=-1, PRS_ACT_NBR=-1, PRS_PAI_MNT=-3.37, BSE_REM_MNT=-2.36),
            # C: NULL equals NULL in the group key (ETB_PRE_FIN, CPL_MAJ_TOP): still one claim, cancelled.
            line(keys(3, JAN), "PC", ETB_PRE_FIN=None, CPL_MAJ_TOP=None, PRS_ACT_QTE=2, PRS_PAI_MNT=8.0),
            line(keys(3, FEB), "PC", ETB_PRE_FIN=None, CPL_MAJ_TOP=None, PRS_ACT_QTE=-2, PRS_PAI_MNT=-8.0),
            # D: not the same care date: two claims; the negative one is removed on its own.
            line(keys(4, JAN), "PD", EXE_SOI_DTD="2020-01-15", PRS_ACT_QTE=1),
            line(keys(4, FEB), "PD", EXE_SOI_DTD="2020-01-16", PRS_ACT_QTE=-1),
            # E: billed, cancelled, billed again: net 1; the representative is the earliest of the
            # lines with the largest quantity (E1).
            line(keys(5, JAN), "PE", PRS_ACT_QTE=1, PRS_PAI_MNT=30.0),
            line(keys(5, FEB), "PE", PRS_ACT_QTE=-1, PRS_PAI_MNT=-30.0),
            line(keys(5, MAR), "PE", PRS_ACT_QTE=1, PRS_PAI_MNT=30.0),
        ],
        "ER_PHA_F": [
            {**keys(1, JAN), "PHA_PRS_C13": 3400930000001, "PHA_ACT_QSN": 1, "PHA_ACT_PRU": 25.0},
            {**keys(1, FEB), "PHA_PRS_C13": 3400930000001, "PHA_ACT_QSN": -1, "PHA_ACT_PRU": 25.0},
            {**keys(2, JAN), "PHA_PRS_C13": 3400930000002, "PHA_ACT_QSN": 3, "PHA_ACT_PRU": 3.37},
            {**keys(2, JAN), "PHA_PRS_C13": 3400930000003, "PHA_ACT_QSN": 1, "PHA_ACT_PRU": 1.5},
            {**keys(2, FEB), "PHA_PRS_C13": 3400930000002, "PHA_ACT_QSN": -1, "PHA_ACT_PRU": 3.37},
        ],
        # A table without a quantity: the representative line's rows are kept, the others removed.
        "ER_ETE_F": [
            {**keys(2, JAN), "ETB_EXE_FIN": "ETB001", "ETE_IND_TAA": 2},
            {**keys(2, FEB), "ETB_EXE_FIN": "ETB001", "ETE_IND_TAA": 2},
        ],
    }


@pytest.fixture
def regularisation(engine, tmp_path_factory):
    return scenario_once("dcir_regularisation", engine, tmp_path_factory,
                     lambda eng, d: _run_dcir(eng, d, _regularisation_zone()))


def _key_tuple(row: dict) -> tuple:
    return tuple(row[k] for k in keys(0))


def _expected_keys(k: dict) -> tuple:
    return tuple(D(v) if c in ("FLX_DIS_DTD", "FLX_TRT_DTD") else v for c, v in k.items())


def test_regularisation_full_cancellation_removes_both_lines_and_details(regularisation):
    out, report = regularisation["out"], regularisation["report"]
    assert "PA" not in _patients(out)
    assert "PC" not in _patients(out)  # NULL = NULL in the group key
    assert not [r for r in read_rows(out / "ER_PHA_F") if r["PHA_PRS_C13"] == 3400930000001]
    # A1, A2, C1, C2, D2, B2, E2, E3 -- and the 2 ER_PHA_F rows of A, the cancelling rows of B.
    assert report["dropped_by_rule"]["dcir_regularisation"] == {"ER_PRS_F": 8, "ER_PHA_F": 3, "ER_ETE_F": 1}


def test_regularisation_partial_cancellation_nets_into_one_line(regularisation):
    lines = [r for r in read_rows(regularisation["out"] / "ER_PRS_F") if r["BEN_NIR_PSA"] == "PB"]
    assert len(lines) == 1
    (b,) = lines
    assert _key_tuple(b) == _expected_keys(keys(2, JAN))  # the positive (representative) line
    assert b["PRS_ACT_QTE"] == 2 and b["PRS_ACT_NBR"] == 2
    # Amounts are exact: DECIMAL(18,2) sums, not 10.1 + -3.37 in binary floating point.
    assert b["PRS_PAI_MNT"] == Decimal("6.73") and b["BSE_REM_MNT"] == Decimal("4.71")
    types = column_types(regularisation["out"] / "ER_PRS_F")
    assert types["PRS_PAI_MNT"] == "DECIMAL(18,2)" and types["BSE_REM_MNT"] == "DECIMAL(18,2)"


def test_regularisation_partial_cancellation_nets_detail_rows(regularisation):
    pha = sorted(read_rows(regularisation["out"] / "ER_PHA_F"), key=lambda r: r["PHA_PRS_C13"])
    assert [(r["PHA_PRS_C13"], r["PHA_ACT_QSN"]) for r in pha] == [(3400930000002, 2), (3400930000003, 1)]
    for r in pha:  # the representative line's keys: they join the cleaned ER_PRS_F line
        assert _key_tuple(r) == _expected_keys(keys(2, JAN))
    assert pha[0]["PHA_ACT_PRU"] == Decimal("3.37")
    (ete,) = read_rows(regularisation["out"] / "ER_ETE_F")
    assert _key_tuple(ete) == _expected_keys(keys(2, JAN))


def test_regularisation_groups_need_equal_care_dates_and_pick_the_earliest_line(regularisation):
    kept = {r["BEN_NIR_PSA"]: r for r in read_rows(regularisation["out"] / "ER_PRS_F")}
    assert set(kept) == {"PB", "PD", "PE"}
    assert kept["PD"]["EXE_SOI_DTD"] == D("2020-01-15") and kept["PD"]["PRS_ACT_QTE"] == 1
    assert _key_tuple(kept["PE"]) == _expected_keys(keys(5, JAN))
    assert kept["PE"]["PRS_ACT_QTE"] == 1 and kept["PE"]["PRS_PAI_MNT"] == Decimal("30.00")


def test_regularisation_accounting(regularisation):
    check_accounting(regularisation["report"], regularisation["rows_in"], regularisation["out"])


# ---------------------------------------------------------------------------------------------------
# PMSI
# ---------------------------------------------------------------------------------------------------

GEO_FINESS = "750100042"  # a geographic FINESS of AP-HP (config/clean.yaml)
OK_MCO = {"NIR_RET": False, "NAI_RET": "0", "SEX_RET": False, "SEJ_RET": False, "FHO_RET": False,
          "PMS_RET": False, "DAT_RET": "0"}
OK_BOOL = {c: False for c in ("NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET", "PMS_RET", "DAT_RET")}


def mco_b(rsa, year=2018, eta="010000001", **cols):
    return {"year": year, "ETA_NUM": eta, "RSA_NUM": rsa, "GRG_GHM": "05M09T", "GHS_NUM": 1234,
            "SEJ_NBJ": 3, "SOR_ANN": year, "SOR_MOI": 5, "ENT_MOD": "8", "SOR_MOD": "8", **cols}


def mco_c(rsa, year=2018, eta="010000001", **cols):
    return {"year": year, "ETA_NUM": eta, "RSA_NUM": rsa, "NIR_ANO_17": f"NIR{rsa}", **OK_MCO,
            "EXE_SOI_DTD": f"{year}-05-02", "EXE_SOI_DTF": f"{year}-05-05", "SOR_ANN": year, "SOR_MOI": 5, **cols}


def mco_d(rsa, year=2018, eta="010000001", dgn="E119"):
    return {"year": year, "ETA_NUM": eta, "RSA_NUM": rsa, "ASS_DGN": dgn}


def _pmsi_rules_zone() -> dict[str, list[dict]]:
    mco_stays = {
        "M01": {},                                                          # kept
        "M02": {"c": {"NIR_RET": True}},                                    # bad chaining (boolean code)
        "M03": {"c": {"DAT_RET": "1"}},                                     # bad chaining (text code)
        "M04": {"c": {"PMS_RET": None}},                                    # a missing code is not '0'
        "M05": {"year": 2017, "eta": GEO_FINESS},                           # geographic copy, until 2017
        "M06": {"year": 2018, "eta": GEO_FINESS},                           # after 2017: kept
        "M07": {"b": {"GRG_GHM": "90Z00Z"}},                                # error GHM
        "M08": {"b": {"GHS_NUM": 9999}},                                    # not reimbursed
        "M09": {"c": {"SEX_RET": True}, "b": {"GRG_GHM": "90Z00Z"}},        # two rules: the first counts
        "M10": {"b": {"GRG_GHM": None, "GHS_NUM": None}},                   # NULL group and GHS: kept
    }
    b, c, d = [], [], []
    for rsa, spec in mco_stays.items():
        where = {"year": spec.get("year", 2018), "eta": spec.get("eta", "010000001")}
        b.append(mco_b(rsa, **where, **spec.get("b", {})))
        c.append(mco_c(rsa, **where, **spec.get("c", {})))
        d.append(mco_d(rsa, **where))
    b.append(mco_b("M11"))          # B without C
    d.append(mco_d("M11"))
    c.append(mco_c("M12"))          # C without B
    d.append(mco_d("M13"))          # D without any stay
    b.append(mco_b("M14", year=2017))  # B and C of different file years: not one stay
    c.append(mco_c("M14", year=2018))

    def ssr_b(rha, week, year=2018, eta="020000002", **cols):
        return {"year": year, "ETA_NUM": eta, "RHA_NUM": rha, "RHS_NUM": week, "GRG_GME": "0811A1",
                "MOR_PRP": "S720", **cols}

    def ssr_c(rha, year=2018, eta="020000002", **cols):
        return {"year": year, "ETA_NUM": eta, "RHA_NUM": rha, "NIR_ANO_17": f"NIR{rha}", **OK_BOOL,
                "ENT_DAT": f"{year}-03-01", "SOR_DAT": f"{year}-03-20", **cols}

    def had_b(rhad, year=2018, eta="030000003", **cols):
        return {"year": year, "ETA_NUM_EPMSI": eta, "RHAD_NUM": rhad, "ETA_GRP_GHPC": "0412", **cols}

    def had_c(rhad, year=2018, eta="030000003", **cols):
        return {"year": year, "ETA_NUM_EPMSI": eta, "RHAD_NUM": rhad, "NIR_ANO_17": f"NIR{rhad}", **OK_BOOL,
                "EXE_SOI_DTD": f"{year}-06-01", "EXE_SOI_DTF": f"{year}-06-30", **cols}

    return {
        "T_MCOaaB": b, "T_MCOaaC": c, "T_MCOaaD": d,
        "T_SSRaaB": [ssr_b("S1", "1"), ssr_b("S1", "2"),                                     # kept, 2 weeks
                     ssr_b("S2", "1", GRG_GME="9001Z0"), ssr_b("S2", "2", GRG_GME="9001Z0"),  # error GME
                     ssr_b("S3", "1"), ssr_b("S3", "2"),                                     # bad chaining
                     ssr_b("S4", "1", year=2016, eta=GEO_FINESS)],                           # geographic copy
        "T_SSRaaC": [ssr_c("S1"), ssr_c("S2"), ssr_c("S3", FHO_RET=True), ssr_c("S4", year=2016, eta=GEO_FINESS)],
        "T_SSRaaD": [{"year": 2018, "ETA_NUM": "020000002", "RHA_NUM": "S2", "RHS_NUM": "1", "DGN_COD": "I10"},
                     {"year": 2018, "ETA_NUM": "020000002", "RHA_NUM": "S1", "RHS_NUM": "1", "DGN_COD": "I10"}],
        "T_HADaaB": [had_b("H1"), had_b("H2", ETA_GRP_GHPC="9999"), had_b("H3", year=2017, eta=GEO_FINESS)],
        "T_HADaaC": [had_c("H1"), had_c("H2"), had_c("H3", year=2017, eta=GEO_FINESS)],
        "T_HADaaD": [{"year": 2018, "ETA_NUM_EPMSI": "030000003", "RHAD_NUM": "H2", "DGN_ASS": "C509"},
                     {"year": 2018, "ETA_NUM_EPMSI": "030000003", "RHAD_NUM": "H1", "DGN_ASS": "C509"}],
    }


def _run_pmsi(engine, directory: Path, tables: dict[str, list[dict]]) -> dict:
    zone = directory / "ingest"
    # The SSR tables as ingest may also lay out yearly tables: year=<year>/ sub-directories.
    rows_in = write_zone(zone, tables, hive=("T_SSRaaB", "T_SSRaaC", "T_SSRaaD"))
    out = directory / "clean" / "pmsi"
    report = run_clean(engine, "pmsi", zone, out, ICFG, load_clean_config(), "test")
    return {"report": report, "out": out, "rows_in": rows_in}


def _pmsi_zone() -> dict[str, list[dict]]:
    """The stay-rule cases and the stay-date cases, in one zone (one step run)."""
    tables = _pmsi_rules_zone()
    for table, rows in _stay_dates_zone().items():
        tables.setdefault(table, []).extend(rows)
    return tables


@pytest.fixture
def pmsi_rules(engine, tmp_path_factory):
    return scenario_once("pmsi", engine, tmp_path_factory, lambda eng, d: _run_pmsi(eng, d, _pmsi_zone()))


def _ids(out: Path, table: str, column: str) -> list:
    return sorted(r[column] for r in read_rows(out / table))


def test_pmsi_mco_stay_rules(pmsi_rules):
    out, report = pmsi_rules["out"], pmsi_rules["report"]
    dates = ["D1", "D2", "D3", "D4", "D5", "D6"]  # the stay-date cases (no D rows)
    kept = ["M01", "M06", "M10"]
    assert _ids(out, "T_MCOaaB", "RSA_NUM") == dates + kept
    assert _ids(out, "T_MCOaaC", "RSA_NUM") == dates + kept
    assert _ids(out, "T_MCOaaD", "RSA_NUM") == kept
    assert {(r["year"], r["ETA_NUM"]) for r in read_rows(out / "T_MCOaaB") if r["RSA_NUM"] == "M06"} == {(2018, GEO_FINESS)}
    by_rule = report["dropped_by_rule"]
    assert by_rule["pmsi_bad_chaining"]["T_MCOaaB"] == 4            # M02, M03, M04, M09
    assert by_rule["pmsi_bad_chaining"]["T_MCOaaC"] == 4
    assert by_rule["pmsi_bad_chaining"]["T_MCOaaD"] == 4
    assert by_rule["pmsi_geographic_finess_duplicate"]["T_MCOaaB"] == 1  # M05 (2017)
    assert by_rule["mco_error_ghm"] == {"T_MCOaaB": 1, "T_MCOaaC": 1, "T_MCOaaD": 1}  # M07 (not M09)
    assert by_rule["mco_ghs_9999"] == {"T_MCOaaB": 1, "T_MCOaaC": 1, "T_MCOaaD": 1}   # M08


def test_pmsi_incomplete_stays(pmsi_rules):
    t = pmsi_rules["report"]["tables"]
    # B without C (M11, and M14 of 2017), C without B (M12, and M14 of 2018); D rows of M11 and M13.
    assert t["T_MCOaaB"]["dropped_by_rule"]["pmsi_incomplete_stay"] == 2
    assert t["T_MCOaaC"]["dropped_by_rule"]["pmsi_incomplete_stay"] == 2
    assert t["T_MCOaaD"]["dropped_by_rule"]["pmsi_incomplete_stay"] == 2
    assert pmsi_rules["report"]["stays_removed_by_rule"]["pmsi_incomplete_stay"] == {"MCO": 4}


def test_pmsi_ssr_rules_take_every_week(pmsi_rules):
    out, t = pmsi_rules["out"], pmsi_rules["report"]["tables"]
    assert sorted((r["RHA_NUM"], r["RHS_NUM"]) for r in read_rows(out / "T_SSRaaB")) == [
        ("S1", "1"), ("S1", "2"), ("SD1", "1"), ("SD2", "1")]
    assert _ids(out, "T_SSRaaC", "RHA_NUM") == ["S1", "SD1", "SD2"]
    assert _ids(out, "T_SSRaaD", "RHA_NUM") == ["S1"]
    assert t["T_SSRaaB"]["dropped_by_rule"] == {"ssr_error_gme": 2, "pmsi_bad_chaining": 2,
                                               "pmsi_geographic_finess_duplicate": 1}
    assert t["T_SSRaaD"]["dropped_by_rule"] == {"ssr_error_gme": 1}


def test_pmsi_had_rules(pmsi_rules):
    out, t = pmsi_rules["out"], pmsi_rules["report"]["tables"]
    assert _ids(out, "T_HADaaB", "RHAD_NUM") == ["H1", "HD1", "HD2"]
    assert _ids(out, "T_HADaaC", "RHAD_NUM") == ["H1", "HD1", "HD2"]
    assert _ids(out, "T_HADaaD", "RHAD_NUM") == ["H1"]
    assert t["T_HADaaB"]["dropped_by_rule"] == {"had_error_ghpc": 1, "pmsi_geographic_finess_duplicate": 1}
    assert t["T_HADaaD"]["dropped_by_rule"] == {"had_error_ghpc": 1}


def test_pmsi_stays_removed_by_rule(pmsi_rules):
    assert pmsi_rules["report"]["stays_removed_by_rule"] == {
        "had_error_ghpc": {"HAD": 1},
        "mco_error_ghm": {"MCO": 1},
        "mco_ghs_9999": {"MCO": 1},
        "pmsi_bad_chaining": {"MCO": 4, "SSR": 1},
        "pmsi_geographic_finess_duplicate": {"HAD": 1, "MCO": 1, "SSR": 1},
        "pmsi_incomplete_stay": {"MCO": 4},
        "ssr_error_gme": {"SSR": 1},
    }


def test_pmsi_accounting(pmsi_rules):
    report = pmsi_rules["report"]
    check_accounting(report, pmsi_rules["rows_in"], pmsi_rules["out"])
    for table in ("T_MCOaaA", "T_MCOaaUM", "T_MCOaaMED", "T_SSRaaCCAM"):  # not delivered: empty
        assert report["tables"][table]["rows_read"] == 0 and report["tables"][table]["rows"] == 0


# --- stay dates ------------------------------------------------------------------------------------

def _stay_dates_zone() -> dict[str, list[dict]]:
    none = {"EXE_SOI_DTD": None, "EXE_SOI_DTF": None, "ENT_DAT": None, "SOR_DAT": None}
    old = "1600-01-01"
    mco = {  # RSA_NUM: (C row columns, B row columns)
        "D1": ({"EXE_SOI_DTD": "2018-03-01", "EXE_SOI_DTF": "2018-03-05", "ENT_DAT": "2018-02-01",
                "SOR_DAT": "2018-02-10"}, {}),
        "D2": ({**none, "ENT_DAT": "2018-04-02", "SOR_DAT": "2018-04-06"}, {}),
        "D3": ({**none, "EXE_SOI_DTD": old, "EXE_SOI_DTF": old, "SOR_ANN": 2018, "SOR_MOI": 5},
               {"SOR_ANN": 2018, "SOR_MOI": 5, "SEJ_NBJ": 3}),
        "D4": ({**none, "ENT_DAT": old, "SOR_DAT": old, "SOR_ANN": 2018, "SOR_MOI": 3},
               {"SOR_ANN": 2018, "SOR_MOI": 3, "SEJ_NBJ": None}),
        "D5": ({**none, "SOR_ANN": 2018, "SOR_MOI": 1}, {"SOR_ANN": 2018, "SOR_MOI": 1, "SEJ_NBJ": 10}),
        "D6": ({"EXE_SOI_DTD": old, "EXE_SOI_DTF": "2018-07-09", "ENT_DAT": "2018-07-01", "SOR_DAT": "2018-07-10"}, {}),
    }
    return {
        "T_MCOaaB": [mco_b(rsa, **b) for rsa, (_, b) in mco.items()],
        "T_MCOaaC": [mco_c(rsa, **c) for rsa, (c, _) in mco.items()],
        "T_SSRaaB": [{"year": 2018, "ETA_NUM": "020000002", "RHA_NUM": r, "RHS_NUM": "1", "GRG_GME": "0811A1"}
                     for r in ("SD1", "SD2")],
        "T_SSRaaC": [
            {"year": 2018, "ETA_NUM": "020000002", "RHA_NUM": "SD1", **OK_BOOL, "ENT_DAT": "2018-03-01",
             "SOR_DAT": "2018-03-20", "ANN_LUN_1S": 2018, "MOI_LUN_1S": 2, "SOR_ANN": 2018, "SOR_MOI": 4},
            {"year": 2018, "ETA_NUM": "020000002", "RHA_NUM": "SD2", **OK_BOOL, "ENT_DAT": None,
             "SOR_DAT": None, "ANN_LUN_1S": 2018, "MOI_LUN_1S": 2, "SOR_ANN": 2018, "SOR_MOI": 4},
        ],
        "T_HADaaB": [{"year": 2018, "ETA_NUM_EPMSI": "030000003", "RHAD_NUM": r, "ETA_GRP_GHPC": "0412"}
                     for r in ("HD1", "HD2")],
        "T_HADaaC": [
            {"year": 2018, "ETA_NUM_EPMSI": "030000003", "RHAD_NUM": "HD1", **OK_BOOL, "EXE_SOI_DTD": "2018-06-01",
             "EXE_SOI_DTF": "2018-06-30", "ENT_DAT": "2018-05-01", "SOR_DAT": "2018-05-31"},
            {"year": 2018, "ETA_NUM_EPMSI": "030000003", "RHAD_NUM": "HD2", **OK_BOOL, "EXE_SOI_DTD": None,
             "EXE_SOI_DTF": None, "ENT_DAT": "2018-05-01", "SOR_DAT": "2018-05-31"},
        ],
    }


@pytest.fixture
def stay_dates(pmsi_rules):
    return pmsi_rules


def _dates(out: Path, table: str, key: str, prefix: str) -> dict:
    """(stay_start, stay_end) of the cleaned chaining rows whose stay number starts with `prefix`."""
    return {r[key]: (r["stay_start"], r["stay_end"]) for r in read_rows(out / table) if r[key].startswith(prefix)}


def test_pmsi_mco_stay_dates(stay_dates):
    out = stay_dates["out"]
    assert _dates(out, "T_MCOaaC", "RSA_NUM", "D") == {
        "D1": (D("2018-03-01"), D("2018-03-05")),   # EXE_SOI_DTD/DTF
        "D2": (D("2018-04-02"), D("2018-04-06")),   # else ENT_DAT/SOR_DAT
        "D3": (D("2018-04-28"), D("2018-05-01")),   # 1600 = missing: 1st of SOR_ANN/SOR_MOI, minus SEJ_NBJ
        "D4": (D("2018-03-01"), D("2018-03-01")),   # no SEJ_NBJ: start = end = 1st of the month
        "D5": (D("2017-12-22"), D("2018-01-01")),   # the estimate crosses a year
        "D6": (D("2018-07-01"), D("2018-07-09")),   # each date on its own
    }
    types = column_types(out / "T_MCOaaC")
    assert types["stay_start"] == "DATE" and types["stay_end"] == "DATE"
    # Only the chaining table gains the dates.
    assert "stay_start" not in column_types(out / "T_MCOaaB")


def test_pmsi_ssr_and_had_stay_dates(stay_dates):
    out = stay_dates["out"]
    assert _dates(out, "T_SSRaaC", "RHA_NUM", "SD") == {
        "SD1": (D("2018-03-01"), D("2018-03-20")),   # ENT_DAT/SOR_DAT
        "SD2": (D("2018-02-01"), D("2018-04-01")),   # 1st of ANN_LUN_1S/MOI_LUN_1S, of SOR_ANN/SOR_MOI
    }
    assert _dates(out, "T_HADaaC", "RHAD_NUM", "HD") == {
        "HD1": (D("2018-06-01"), D("2018-06-30")),   # EXE_SOI_DTD/DTF
        "HD2": (D("2018-05-01"), D("2018-05-31")),   # else ENT_DAT/SOR_DAT
    }


# ---------------------------------------------------------------------------------------------------
# Input views: yearly tables whose files differ in columns
# ---------------------------------------------------------------------------------------------------
# Ingest writes each delivered file with the columns that file had (`columns_in_schema_order`), under
# TABLE/year=YYYY/, and SNDS tables gain columns over the years (T_MCOaaC.EXE_SOI_DTD/DTF from 2009,
# RULES.md). The clean step must see every year's values whatever columns the other years have.

def _mco_c_by_year(zone: Path, with_dates: dict[int, bool]) -> None:
    for year, dated in with_dates.items():
        row = {"ETA_NUM": "010000001", "RSA_NUM": f"R{year}", "NIR_ANO_17": "N1", "ENT_DAT": f"{year}-02-01"}
        if dated:
            row["EXE_SOI_DTD"] = f"{year}-03-01"
        write_table(zone / "T_MCOaaC", f"year={year}", [row], types=dict(schema_columns(ICFG, "T_MCOaaC")))


def _register_and_read(engine, zone: Path) -> list[tuple]:
    """The clean step's input view of T_MCOaaC (steprun.register_table, as clean_pmsi makes it)."""
    register_table(engine, zone, "T_MCOaaC", ICFG)
    rows = sorted(engine.rows('SELECT "year", "ENT_DAT", "EXE_SOI_DTD" FROM "T_MCOaaC"'))
    engine.drop_view("T_MCOaaC")
    return rows


def test_yearly_column_added_in_a_later_year_is_read(engine, tmp_path):
    _mco_c_by_year(tmp_path, {2008: False, 2010: True})   # EXE_SOI_DTD delivered from 2009 on
    assert _register_and_read(engine, tmp_path) == [
        (2008, D("2008-02-01"), None), (2010, D("2010-02-01"), D("2010-03-01"))]


def test_yearly_column_dropped_in_a_later_year_is_null(engine, tmp_path):
    _mco_c_by_year(tmp_path, {2008: True, 2010: False})
    assert _register_and_read(engine, tmp_path) == [
        (2008, D("2008-02-01"), D("2008-03-01")), (2010, D("2010-02-01"), None)]


def test_first_week_of_a_stay_is_chosen_by_number(engine):
    """SSR: the stay's first row is its lowest RHS_NUM as a number ('2' before '10'), on both engines."""
    from spark_jobs import sqlrender

    engine.register_rows("weeks", ["year", "ETA_NUM", "RHA_NUM", "RHS_NUM", "GRG_GME"],
                         [("2018", "1", "S", "10", "W10"), ("2018", "1", "S", "2", "W2"), ("2018", "1", "T", "3", "T3")])
    sql = ("{% from 'clean/pmsi/_stays.sql' import first_stay_rows %}"
           "SELECT RHA_NUM, GRG_GME FROM ({{ first_stay_rows('weeks', key, columns, 'RHS_NUM') }}) AS f ORDER BY RHA_NUM")
    rendered = sqlrender.render_text(sql, key=["year", "ETA_NUM", "RHA_NUM"], columns=["RHS_NUM", "GRG_GME"])
    assert engine.rows(rendered) == [("S", "W2"), ("T", "T3")]
