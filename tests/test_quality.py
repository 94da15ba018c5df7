"""Quality gates (spark_jobs/quality.py, sql/quality/): each check kind on small tables on both
engines, the declared checks' validation, and the clean and model gates on a real pipeline run over
a synthetic delivery: they pass on it, and fail (blocking, with every check in the report) when the
zones are damaged the ways the checks exist for."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

from spark_jobs import lakefs, sqlrender
from spark_jobs.delivery import IngestConfig
from spark_jobs.quality import CHECKS_FILE, GateFailed, load_checks, main, release_window, run_gate
from spark_jobs.steprun import StepError

PSEUDO = "a" * 64


# --- each check kind, on both engines ---------------------------------------------------------------
def _register(engine, view: str, columns: list[str], rows: list[tuple], types: dict[str, str] | None = None):
    """A typed view over rows held in Python (register_rows gives VARCHAR columns)."""
    engine.register_rows(f"{view}__text", columns, [tuple(None if v is None else str(v) for v in r) for r in rows])
    select = ", ".join(f"CAST({sqlrender.ident(c)} AS {(types or {}).get(c, 'VARCHAR')}) AS {sqlrender.ident(c)}"
                       for c in columns)
    engine.create_view(view, f"SELECT {select} FROM {view}__text")


def _check(engine, kind: str, **params) -> tuple:
    (row,) = engine.rows(sqlrender.render(f"quality/{kind}.sql", **params))
    return tuple(int(v) if isinstance(v, (int, float)) or (v is not None and str(v).isdigit()) else v for v in row)


@pytest.mark.spark
def test_each_check_kind_counts_what_it_must(engine):
    _register(engine, "t", ["k1", "k2", "code", "d", "pid"], [
        ("1", "a", "C669", "2019-01-01", PSEUDO),
        ("1", "a", "C66.9", "2005-12-31", PSEUDO),      # duplicate key, dotted code, before the window
        ("2", None, "Z99", None, "0123456789ABCDEFG"),  # raw-looking identifier, NULL date
        ("3", "b", None, "2031-01-01", None),           # NULL code (not a format error), after the window
    ], {"d": "DATE"})
    _register(engine, "parent", ["k1"], [("1",), ("2",)])
    assert _check(engine, "unique", view="t", columns=["k1", "k2"]) == (1, 4, None)
    assert _check(engine, "unique", view="t", columns=["k1", "k2", "code"]) == (0, 4, None)
    assert _check(engine, "references", view="t", parent_view="parent", columns=["k1"]) == (1, 4, None)
    assert _check(engine, "pattern", view="t", column="code", pattern="^[A-Z][0-9]{2}[0-9A-Z]{0,4}$",
                  where=None) == (1, 3, None)
    assert _check(engine, "null_rate", view="t", column="d", where=None) == (1, 4, None)
    assert _check(engine, "date_window", view="t", column="d", where=None, window_start="2006-01-01",
                  window_end="2030-12-31", start_exempt=None) == (2, 3, None)
    assert _check(engine, "date_window", view="t", column="d", where="k1 = '1'", window_start="2006-01-01",
                  window_end="2030-12-31", start_exempt=None) == (1, 2, None)
    # Rows exempt from the start (a PMSI stay admitted before the window) are checked against the end only.
    assert _check(engine, "date_window", view="t", column="d", where=None, window_start="2006-01-01",
                  window_end="2030-12-31", start_exempt="\"k2\" IN ('a')") == (1, 3, None)
    assert _check(engine, "date_window", view="t", column="d", where=None, window_start="2006-01-01",
                  window_end="2020-12-31", start_exempt="k1 = '3'") == (2, 3, None)
    assert _check(engine, "pseudonyms", pattern="^[0-9a-f]{64}$",
                  targets=[{"view": "t", "table": "T", "column": "pid"}]) == (1, 3, "T.pid")

    _register(engine, "patients", ["patient_id", "birth_year", "birth_month", "death_date"], [
        ("p1", 1990, 6, "2020-03-01"), ("p2", None, None, None)],
        {"birth_year": "INTEGER", "birth_month": "INTEGER", "death_date": "DATE"})
    _register(engine, "events", ["patient_id", "date"], [
        ("p1", "1990-06-01"), ("p1", "1990-05-31"), ("p1", "2020-03-02"), ("p1", "2020-03-01"), ("p2", "1900-01-01")],
        {"date": "DATE"})
    assert _check(engine, "within_life", view="events", column="date") == (2, 5, None)

    _register(engine, "accounting_items", ["step", "item", "rows_in", "rows_out", "set_aside", "rows_found",
                                           "rows_upstream"], [
        ("ingest", "A.csv", 10, 8, 2, None, None),   # ok
        ("clean", "A", 8, 7, 1, 7, 8),               # ok
        ("clean", "B", 8, 7, 0, 7, None),            # a row lost without a rule
        ("clean", "C", 5, 5, 0, 4, None),            # the Parquet holds fewer rows than reported
        ("clean", "D", 6, 6, 0, 6, 5),               # reads more than upstream wrote
    ])
    assert _check(engine, "accounting") == (3, 5, "clean B")

    _register(engine, "drift_items", ["table_name", "row_count", "previous_rows"], [
        ("a", 150, 100), ("b", 151, 100), ("c", 49, 100), ("d", 100, 100)])
    assert _check(engine, "drift", tolerance=0.5) == (2, 4, "b")

    _register(engine, "model_t", ["patient_id", "n", "d", "amount"], [
        ("p1", 1, "2020-01-02", "1.500"), ("p1", 1, "2020-01-02", "1.500"), ("p2", None, None, None)],
        {"n": "BIGINT", "d": "DATE", "amount": "DECIMAL(18,3)"})
    _register(engine, "truth_t", ["patient_id", "n", "d", "amount"], [
        ("p1", "1", "2020-01-02", "1.500"), ("p1", "1", "2020-01-02", "1.500"), ("p2", "", "", "")])
    assert _check(engine, "truth_events", view="model_t", truth_view="truth_t",
                  columns=["patient_id", "n", "d", "amount"]) == (0, 3, None)
    _register(engine, "truth_t", ["patient_id", "n", "d", "amount"], [
        ("p1", "1", "2020-01-02", "1.500"), ("p2", "", "", ""), ("p3", "2", "", "")])
    assert _check(engine, "truth_events", view="model_t", truth_view="truth_t",
                  columns=["patient_id", "n", "d", "amount"]) == (2, 3, None)  # a duplicate lost, a row extra


def test_release_window():
    assert release_window("2024-02", "2006-01-01") == ("2006-01-01", "2024-02-29")
    assert release_window("2023-12", "2006-01-01") == ("2006-01-01", "2023-12-31")
    assert release_window("demo-n300", "2006-01-01", today=dt.date(2026, 12, 4)) == ("2006-01-01", "2026-12-04")


def test_declared_checks_are_validated(tmp_path):
    spec = load_checks()
    assert {c["kind"] for c in spec["clean"] + spec["model"]} >= {
        "accounting", "unique", "references", "pattern", "null_rate", "date_window", "within_life", "pseudonyms",
        "drift", "truth_events", "truth_attrition", "rule_inputs"}
    base = yaml.safe_load(CHECKS_FILE.read_text())
    cases = {
        "kind 'nonsense' is not one of": {"name": "x", "kind": "nonsense", "severity": "blocking", "description": "d"},
        "'severity' missing": {"name": "x", "kind": "unique", "table": "t", "columns": ["a"], "description": "d"},
        "severity 'fatal' is not blocking or warning": {"name": "x", "kind": "unique", "table": "t",
                                                          "columns": ["a"], "severity": "fatal", "description": "d"},
        "'table' or 'tables' missing": {"name": "x", "kind": "pattern", "column": "c", "pattern": "^a$",
                                        "severity": "warning", "description": "d"},
        "zone 'clean' is not read at the model stage": {"name": "x", "kind": "unique", "zone": "clean", "table": "t",
                                                        "columns": ["a"], "severity": "warning", "description": "d"},
        "name 'accounting' used twice": {"name": "accounting", "kind": "accounting", "severity": "blocking",
                                         "description": "d"},
    }
    for message, bad in cases.items():
        path = tmp_path / "checks.yaml"
        path.write_text(yaml.safe_dump({**base, "model": base["model"] + [bad]}))
        with pytest.raises(StepError, match=message):
            load_checks(path)


# --- the gates on a real run -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline_run(synth_pipeline, tmp_path_factory):
    """The pipeline on the synthetic delivery (DuckDB), laid out as the release DAG lays it out:
    zones, the run's model, the step reports in the run directory."""
    zones_dir, reports = synth_pipeline
    out = tmp_path_factory.mktemp("quality")
    for zone in zones_dir.iterdir():
        (out / zone.name).symlink_to(zone, target_is_directory=True)
    for step, report in reports.items():
        lakefs.write_json(out / "run" / "steps" / f"{step}.json", {"step": step, **report})
    return out


def zones(out: Path) -> dict:
    return {z: out / z for z in ("ingest", "quarantine", "clean", "merge", "model")}


def gate(engine_name: str, out: Path, stage: str, delivery: Path, spark=None, **kwargs) -> dict:
    from spark_jobs.engines import open_engine

    with open_engine(engine_name, **({"spark": spark} if spark else {})) as engine:
        return run_gate(engine, stage, zones=kwargs.pop("zones", zones(out)), run_dir=out / "run",
                        icfg=IngestConfig.load(), release="2019-06", delivery=delivery, truth=out / "truth", **kwargs)


def by_name(result: dict) -> dict:
    return {c["name"]: c for c in result["checks"]}


def test_gates_pass_on_a_clean_synthetic_run(pipeline_run, synth_delivery, synth_truth):
    clean = gate("duckdb", pipeline_run, "clean", synth_delivery)
    assert clean["totals"]["failed"] == 0 and clean["totals"]["skipped"] == 0, [
        c for c in clean["checks"] if c["status"] != "pass"]
    checks = by_name(clean)
    # Every file and table reconciled, and the attrition equals the generator's truth.
    assert checks["accounting"]["total"] >= len(synth_truth["files"]) and checks["accounting"]["observed"] == 0
    assert checks["truth_attrition"]["status"] == "pass" and checks["truth_attrition"]["total"] == len(synth_truth["files"])
    assert clean["release_window"] == ["2006-01-01", "2019-06-30"]

    model = gate("duckdb", pipeline_run, "model", synth_delivery)
    failing = [c for c in model["checks"] if c["status"] == "fail"]
    assert failing == []
    checks = by_name(model)
    # The truth comparison ran on every event table, row for row.
    for table, n in synth_truth["events"].items():
        assert checks[f"model_matches_truth:{table}"]["total"] == n, table
    assert checks["drift_from_previous_release"]["status"] == "skipped"  # no lake given
    assert checks["patient_key_unique"]["total"] == synth_truth["patients"]["n"]


def test_a_real_delivery_skips_the_truth_checks(pipeline_run, tmp_path):
    """No `_truth/` beside the files and an empty truth zone (ingest of a real delivery): the truth
    checks are skipped, saying why, and the gate passes on the rest."""
    (tmp_path / "truth").mkdir()
    from spark_jobs.engines import open_engine

    with open_engine("duckdb") as engine:
        results = [run_gate(engine, stage, zones=zones(pipeline_run), run_dir=pipeline_run / "run",
                            icfg=IngestConfig.load(), release="2019-06", delivery=tmp_path, truth=tmp_path / "truth")
                   for stage in ("clean", "model")]
    truth = [c for r in results for c in r["checks"] if c["kind"] in ("truth_attrition", "truth_events")]
    assert len(truth) == 15 and all(c["status"] == "skipped" and "not a synthetic delivery" in c["message"]
                                    for c in truth)
    assert all(r["totals"]["failed"] == 0 for r in results)


def _copy(out: Path, tmp_path: Path) -> Path:
    """A copy to damage (the zones are the session's: symlinks followed)."""
    copy = tmp_path / "run"
    shutil.copytree(out, copy, symlinks=False)
    return copy


def _rewrite(directory: Path, sql: str) -> None:
    """Replace a Parquet table directory by `sql` over its rows (view `t`)."""
    files = sorted(directory.rglob("*.parquet"))
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS SELECT * FROM read_parquet({[str(f) for f in files]}, hive_partitioning = false)")
    for f in files:
        f.unlink()
    con.execute(f"COPY ({sql}) TO '{directory / 'part-00000.parquet'}' (FORMAT PARQUET)")


def test_model_gate_blocks_a_damaged_model(pipeline_run, synth_delivery, tmp_path):
    """A raw identifier in a model table, a lost row and an ICD-10 code with a dot: the gate fails
    (exit 1 from the entry point), its report lists every check, and names the failing ones."""
    out = _copy(pipeline_run, tmp_path)
    _rewrite(out / "model" / "diagnoses",
             "SELECT * REPLACE (CASE WHEN rowid = 0 THEN '0123456789ABCDEFG' ELSE patient_id END AS patient_id, "
             "CASE WHEN rowid = 1 THEN 'C66.9' ELSE code END AS code) FROM t")
    _rewrite(out / "model" / "consults", "SELECT * FROM t WHERE rowid > 0")
    report = out / "run" / "steps" / "gate_model.json"
    code = main(["--stage", "model", "--engine", "duckdb", "--run-dir", str(out / "run"), "--clean", str(out / "clean"),
                 "--merge", str(out / "merge"), "--model", str(out / "model"), "--truth", str(out / "truth"),
                 "--delivery", str(synth_delivery), "--report", str(report), "--release", "2019-06", "--run-id", "t"])
    assert code == 1
    result = json.loads(report.read_text())
    assert result["step"] == "gate_model" and result["status"] == "failed"
    assert "quality gate model failed" in result["error"]
    checks = by_name(result)
    assert len(checks) == len(load_checks()["model"]) + sum(len(c.get("tables", [])) - 1 for c in load_checks()["model"]
                                                              if c.get("tables"))
    failed = {n for n, c in checks.items() if c["status"] == "fail"}
    assert {"patient_id_pseudonym", "icd10_format", "event_patient_exists:diagnoses", "model_matches_truth:diagnoses",
            "model_matches_truth:consults", "accounting"} <= failed
    assert checks["accounting"]["message"].endswith("(first: model consults)")
    assert checks["patient_id_pseudonym"]["observed"] == 1 and checks["icd10_format"]["observed"] == 1
    assert result["totals"]["failed"] == len([c for c in checks.values()
                                              if c["status"] == "fail" and c["severity"] == "blocking"])
    # Reports hold counts and names, never the offending values.
    assert "0123456789ABCDEFG" not in report.read_text() and "C66.9" not in report.read_text()


def test_clean_gate_blocks_lost_rows_and_raw_identifiers(pipeline_run, synth_delivery, tmp_path):
    out = _copy(pipeline_run, tmp_path)
    _rewrite(out / "clean" / "dcir" / "ER_PHA_F", "SELECT * FROM t WHERE rowid > 2")  # 3 rows gone, no rule
    _rewrite(out / "ingest" / "IR_BEN_R", "SELECT * REPLACE (CASE WHEN rowid = 0 THEN 'RAW0123456789ABCD' "
                                          "ELSE BEN_NIR_PSA END AS BEN_NIR_PSA) FROM t")
    with pytest.raises(GateFailed) as failed:
        gate("duckdb", out, "clean", synth_delivery)
    checks = by_name(failed.value.sections)
    assert checks["accounting"]["status"] == "fail" and checks["accounting"]["message"].endswith(
        "(first: clean_dcir ER_PHA_F)")
    assert checks["no_raw_identifier_in_referentials:IR_BEN_R"]["observed"] == 1
    assert checks["prestation_patient_known"]["status"] == "fail"  # a warning: recorded, not blocking
    assert checks["prestation_patient_known"]["severity"] == "warning"
    assert "accounting" in str(failed.value) and "prestation_patient_known" not in str(failed.value)


def test_a_warning_does_not_block(pipeline_run, synth_delivery, tmp_path):
    spec = load_checks()
    spec["model"] = [c for c in spec["model"] if c["name"] != "stay_dates_present"] + [
        {"name": "no_stay_longer_than_a_day", "kind": "pattern", "table": "stays", "column": "ghm",
         "pattern": "^$", "severity": "warning", "description": "every GHM is empty (false here)"}]
    result = gate("duckdb", pipeline_run, "model", synth_delivery, checks=spec)
    assert result["totals"]["warnings"] == 1 and result["totals"]["failed"] == 0
    assert by_name(result)["no_stay_longer_than_a_day"]["status"] == "fail"


@pytest.mark.spark
def test_gates_give_the_same_results_on_both_engines(pipeline_run, synth_delivery, spark):
    for stage in ("clean", "model"):
        duck = gate("duckdb", pipeline_run, stage, synth_delivery)
        on_spark = gate("spark", pipeline_run, stage, synth_delivery, spark=spark)
        assert on_spark == duck, stage
