"""The release DAG end to end with `airflow dags test`, on each engine, on a synthetic delivery:
the summary's Parquet row counts plus quarantine equal the CSV rows and match the truth."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pytest

from helpers import run_release_dag, tree_bytes


def ingest_steps():
    from snds_operators.releases import STEPS

    return STEPS


@pytest.mark.parametrize("engine, region", [("duckdb", "local"), ("spark-local", "eu-frankfurt")])
def test_release_dag_end_to_end(engine, region, synth_delivery, synth_truth, tmp_path):
    """The default region on DuckDB; eu-frankfurt's local variant on spark-local (its own engine)."""
    job_engine = "duckdb" if engine == "duckdb" else "spark"
    proc = run_release_dag(tmp_path, synth_delivery, None, f"e2e-{engine}", region=region)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    summary_path = lines[-1]
    assert summary_path.endswith("summary.json") and os.path.isfile(summary_path), lines[-5:]
    # Progress was shown as it went: tasks and the step's own lines.
    out = proc.stdout
    assert "▶ ingest" in out and "■ ingest: success" in out and "snds.ingest: ingest ER_PRS_F.csv" in out
    assert "■ check_keys: success" in out and "■ update_vault: success" in out and "snds.ingest: pseudonymise:" in out
    for task in ("clean_dcir", "clean_pmsi", "merge", "model"):
        assert f"■ {task}: success" in out, task
    assert "snds.clean: clean ER_PRS_F:" in out and "snds.model: model patients:" in out
    for task in ("gate_clean", "gate_model", "feasibility_report", "publish"):
        assert f"■ {task}: success" in out, task
    assert "snds.quality: gate model: model_matches_truth:diagnoses" in out

    summary = json.loads(open(summary_path).read())
    assert summary["status"] == "success" and summary["engine"] == engine and summary["region"] == region
    assert summary["release"] == f"e2e-{engine}" and summary["code_version"]
    assert summary["truth_check"]["status"] == "match", summary["truth_check"]
    # ingest files, cleaning attrition per rule and table, and every event table's row count
    assert summary["truth_check"]["checked"] == ["ingest", "clean", "model"]
    for step in ("clean_dcir", "clean_pmsi", "merge", "model", "gate_clean", "gate_model", "feasibility_report"):
        assert summary["steps"][step]["status"] == "success" and summary["steps"][step]["engine"] == job_engine
    # The gates ran every declared check; on the synthetic delivery the model equals the truth.
    gates = {c["name"]: c for g in ("gate_clean", "gate_model") for c in summary["steps"][g]["checks"]}
    assert gates["model_matches_truth:drug_dispensations"]["status"] == "pass"
    assert gates["truth_attrition"]["status"] == "pass" and gates["accounting"]["status"] == "pass"
    assert not [c for c in gates.values() if c["status"] == "fail"]
    # Published: the run's model is the release's current version; the catalog serves it.
    release = f"e2e-{engine}"
    published = json.loads((tmp_path / "lake" / "published" / f"release={release}" / "CURRENT.json").read_text())
    assert published["run_id"] == summary["run_id"] and summary["steps"]["publish"]["status"] == "success"
    assert published["report"] == str(tmp_path / "lake" / "runs" / f"release={release}" /
                                      os.path.basename(os.path.dirname(summary_path)) / "feasibility.html")
    assert os.path.isfile(published["report"])
    assert {t: info["rows"] for t, info in published["tables"].items()} == model_rows_of(summary)
    catalog = duckdb.connect(str(tmp_path / "lake" / "catalog" / f"{region}.duckdb"), read_only=True)
    assert catalog.execute("SELECT count(*) FROM main.patients").fetchone()[0] == synth_truth["patients"]["n"]
    catalog.close()
    # The audit database has the run: who started it, inputs with their checksums, steps, checks.
    from spark_jobs.audit import open_audit

    with open_audit(str(tmp_path / "audit" / "audit.db")) as audit:
        record = audit.run_record(summary["run_id"])
    assert record["status"] == "success" and record["run_type"] == "manual" and record["published"]
    assert record["config_hash"] == summary["config_hash"] and len(record["inputs"]) == len(synth_truth["files"])
    import hashlib

    sha = {i["file"]: i["sha256"] for i in record["inputs"]}
    assert sha["ER_PRS_F.csv"] == hashlib.sha256((synth_delivery / "ER_PRS_F.csv").read_bytes()).hexdigest()
    assert {s["step"] for s in record["steps"]} == set(summary["steps"])
    assert len(record["checks"]) == sum(len(summary["steps"][g]["checks"]) for g in ("gate_clean", "gate_model"))
    assert model_rows_of(summary) == synth_truth["events"]
    ingest = summary["steps"]["ingest"]
    assert ingest["status"] == "success" and ingest["engine"] == job_engine
    assert summary["trigger"] == "manual" and summary["steps_selected"] == list(ingest_steps())

    csv_rows = sum(t["rows"] for t in synth_truth["files"].values())
    totals = ingest["totals"]
    assert totals["rows_read"] == csv_rows
    assert totals["rows_written"] + totals["quarantined"] + totals["dropped_by_rule"] == csv_rows
    expected_q = sum(sum(t["quarantine"].values()) for t in synth_truth["files"].values())
    assert totals["quarantined"] == expected_q

    con = duckdb.connect()
    for table, info in ingest["tables"].items():
        expected = sum(t["rows"] - sum(t["quarantine"].values()) - t["cleaning"].get("pmsi_placeholder_nir", 0)
                       for t in synth_truth["files"].values() if t["table"] == table)
        (n,) = con.execute(f"SELECT count(*) FROM read_parquet('{info['path']}/**/*.parquet')").fetchone()
        assert n == info["rows"] == expected, table

    # Encryption tasks: the key was created on this first run, the new identifiers sealed into vault v1.
    enc = summary["encryption"]
    assert enc["check_keys"]["key_created"] is True and enc["check_keys"]["vault_version"] is None
    ps = ingest["pseudonymisation"]
    assert ps["hashed"] == ps["identifiers"] > 0 and ps["known"] == 0 and ps["hash_calls"] == ps["hashed"]
    assert enc["update_vault"] == {"version": "v000001", "merged_deltas": 1, "new_entries": ps["hashed"],
                                   "entries": ps["hashed"]}

    # Byte scan: no raw identifier of the delivery in the lake (data, quarantine, reports), the
    # Airflow home (task logs, XComs in the metadata database) or the printed output.
    from spark_jobs.delivery import IngestConfig
    from spark_jobs.leakscan import delivery_identifiers, scan

    ids = delivery_identifiers(synth_delivery, IngestConfig.load())
    assert len(ids) >= synth_truth["patients"]["n"]
    assert scan([tmp_path / "lake", tmp_path / "airflow", tmp_path / "secure", tmp_path / "audit"], ids) == []
    assert scan_text(proc.stdout + proc.stderr, ids) == []

    # Linkage preserved: every PMSI patient of the truth has the pseudonym of its DCIR/IR_BEN_R rows.
    lake = tmp_path / "lake" / "ingest" / f"release=e2e-{engine}"
    (unlinked,) = con.execute(f"""
        SELECT count(*) FROM read_parquet('{lake}/T_MCOaaC/*/*.parquet') c
        LEFT JOIN read_parquet('{lake}/IR_BEN_R/*.parquet') b ON b.BEN_NIR_PSA = c.NIR_ANO_17
        WHERE b.BEN_NIR_PSA IS NULL""").fetchone()
    assert unlinked == 0

    # OpenLineage: every step's run emitted events in the region's namespace, with its inputs and outputs.
    events = [json.loads(line) for line in (tmp_path / "lineage" / "events.jsonl").read_text().splitlines()]
    complete = {e["job"]["name"].split(".")[-1]: e for e in events if e["eventType"] == "COMPLETE"}
    assert {"ingest", "clean_dcir", "clean_pmsi", "merge", "model"} <= set(complete), sorted(complete)
    assert {e["job"]["namespace"] for e in events} == {f"snds-{region}" if region != "local" else "snds-local"}
    lake = tmp_path / "lake"
    assert [(d["namespace"], d["name"]) for d in complete["merge"]["inputs"]] == [
        ("file", f"{lake}/clean/release=e2e-{engine}")]
    assert [(d["namespace"], d["name"]) for d in complete["ingest"]["outputs"]] == [
        ("file", f"{lake}/ingest/release=e2e-{engine}"), ("file", f"{lake}/quarantine/release=e2e-{engine}")]

    if engine != "duckdb":
        return  # the reruns below are engine-independent orchestration; they are paid once, on DuckDB
    # The cohort DAG (triggered by hand here; by the publication's Asset event in a deployment) builds the
    # example study over the version just published.
    proc = run_cohort_dag(tmp_path, release)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    from spark_jobs.cohort import cohort_dir, read_cohort

    built = read_cohort(cohort_dir(lake / "cohorts", "t2d_treated", release, summary["run_id"]))
    assert built["model_run_id"] == summary["run_id"] and built["totals"]["patients"] > 0, built
    # A second run of the same release hashes nothing: every identifier is in the vault now.
    proc = run_release_dag(tmp_path, synth_delivery, engine, f"e2e-{engine}")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    again = json.loads(open(proc.stdout.strip().splitlines()[-1]).read())
    # A new version of the release, published; the first one stays readable through the catalog.
    from spark_jobs.publish import list_versions

    versions = list_versions(lake, f"e2e-{engine}")
    assert [(v["run_id"], v["current"]) for v in versions] == [(summary["run_id"], False), (again["run_id"], True)]
    catalog = duckdb.connect(str(lake / "catalog" / "local.duckdb"), read_only=True)
    assert catalog.execute("SELECT run_id, count(*) FROM history.patients GROUP BY run_id ORDER BY run_id").fetchall() \
        == sorted([(summary["run_id"], synth_truth["patients"]["n"]), (again["run_id"], synth_truth["patients"]["n"])])
    catalog.close()
    ps2 = again["steps"]["ingest"]["pseudonymisation"]
    assert (ps2["hashed"], ps2["known"], ps2["hash_calls"], ps2["vault_version"]) == (0, ps["identifiers"], 0, "v000001")
    assert again["encryption"]["update_vault"]["merged_deltas"] == 0

    # Only some steps: the others are skipped and their zones reused; the summary covers the selected ones.
    before = tree_bytes(lake / "ingest")
    proc = run_release_dag(tmp_path, synth_delivery, None, f"e2e-{engine}", args=["--steps", "merge,model"])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "■ ingest: skipped" in proc.stdout and "■ clean_dcir: skipped" in proc.stdout
    assert "■ merge: success" in proc.stdout and "■ model: success" in proc.stdout
    partial = json.loads(open(proc.stdout.strip().splitlines()[-1]).read())
    assert partial["status"] == "success" and sorted(partial["steps"]) == [
        "feasibility_report", "gate_model", "merge", "model", "publish"]
    assert partial["steps_selected"] == ["merge", "model"]
    assert partial["steps"]["gate_model"]["status"] == "success" and partial["steps"]["publish"]["status"] == "success"
    assert tree_bytes(lake / "ingest") == before

    # A dry run checks the parameters, connections and the delivery, and runs no step.
    proc = run_release_dag(tmp_path, synth_delivery, None, "dry", args=["--dry-run"])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "■ preflight: success" in proc.stdout and "■ ingest: skipped" in proc.stdout
    dry = json.loads(open(proc.stdout.strip().splitlines()[-1]).read())
    assert dry["status"] == "dry_run" and dry["steps"] == {} and not (lake / "ingest" / "release=dry").exists()
    assert not (lake / "published" / "release=dry").exists()


def run_cohort_dag(tmp_path, release: str):
    """`airflow dags test snds_cohorts__local` for `release`, in the Airflow home and regions of the
    release runs above (helpers.run_release_dag)."""
    import subprocess
    import sys

    from snds_operators.localrun import local_env
    from snds_operators.regions import PROJECT_ROOT

    env = {k: v for k, v in local_env().items()
           if k not in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__UNIT_TEST_MODE")}
    env.update(AIRFLOW_HOME=str(tmp_path / "airflow"), SNDS_REGIONS_DIR=str(tmp_path / "regions"), SNDS_REGIONS="local")
    return subprocess.run([sys.executable, "-m", "airflow", "dags", "test", "snds_cohorts__local", "-c",
                           json.dumps({"release": release})], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def model_rows_of(summary: dict) -> dict:
    return {t: info["rows"] for t, info in summary["steps"]["model"]["tables"].items()}


def test_a_failed_gate_publishes_nothing(tmp_path, synth_delivery):
    """Release 2017-06 of a delivery holding care up to 2018: the model gate's release-window checks
    fail, so neither the feasibility report nor publish runs; the run is failed, recorded as such in the
    audit database with every check, and nothing is queryable."""
    proc = run_release_dag(tmp_path, synth_delivery, None, "2017-06")
    assert proc.returncode != 0
    assert "■ gate_clean: success" in proc.stdout and "■ gate_model: failed" in proc.stdout
    assert "▶ publish" not in proc.stdout and "▶ feasibility_report" not in proc.stdout
    assert "quality gate model failed" in proc.stderr and "event_date_in_release_window:consults" in proc.stderr
    lake = tmp_path / "lake"
    assert not (lake / "published").exists() and not (lake / "catalog").exists()
    summary = json.loads(next((lake / "runs" / "release=2017-06").glob("*/summary.json")).read_text())
    assert summary["status"] == "failed" and summary["steps"]["gate_model"]["status"] == "failed"
    from spark_jobs.audit import open_audit

    with open_audit(str(tmp_path / "audit" / "audit.db")) as audit:
        record = audit.run_record(summary["run_id"])
    assert record["status"] == "failed" and not record["published"]
    failed = {c["name"] for c in record["checks"] if c["status"] == "fail"}
    assert "event_date_in_release_window:consults" in failed and "stay_in_release_window:stays" in failed


def scan_text(text: str, ids: set[str]) -> list[str]:
    import re

    return sorted(set(re.findall(r"[A-Za-z0-9]+", text)) & ids)


def test_release_dag_reports_a_bad_delivery(tmp_path):
    bad = tmp_path / "delivery"
    bad.mkdir()
    (bad / "ER_PRS_F.csv").write_text("BEN_NIR_PSA;NOT_A_COLUMN\nA;1\n")
    proc = run_release_dag(tmp_path, bad, "duckdb", "bad")
    assert proc.returncode != 0
    assert "release run failed" in proc.stderr
    # the reason is shown, not only "see the log" (an extra column is kept as text; missing keys are not)
    assert "header does not match the ER_PRS_F schema: key columns missing: DCT_ORD_NUM" in proc.stderr


def test_release_dag_refuses_a_cross_wired_run(tmp_path, synth_delivery):
    """Run-time sovereignty, end to end: a delivery outside the region's storage fails prepare_run; a
    Spark connection pointing at another master fails the preflight; no step runs, no zone is written."""
    import json as _json

    from helpers import write_test_region

    regions = write_test_region(tmp_path, name="eu-frankfurt")  # the delivery's directory is not a root
    proc = run_release_dag(tmp_path, synth_delivery, None, "foreign", region="eu-frankfurt", regions=regions)
    assert proc.returncode != 0
    assert "■ prepare_run: failed" in proc.stdout and "▶ preflight" not in proc.stdout
    assert "is outside the region's allowed storage" in proc.stderr

    regions = write_test_region(tmp_path, name="eu-frankfurt", roots=(synth_delivery.parent,))
    proc = run_release_dag(tmp_path, synth_delivery, None, "rewired", region="eu-frankfurt", regions=regions,
                           extra_env={"AIRFLOW_CONN_SPARK_EU_FRANKFURT_LOCAL": _json.dumps(
                               {"conn_type": "spark", "host": "spark://10.0.0.1:7077"})})
    assert proc.returncode != 0
    assert "■ preflight: failed" in proc.stdout and "▶ ingest" not in proc.stdout
    assert "points to Spark master 'spark://10.0.0.1:7077', not the region's 'local[*]'" in proc.stdout + proc.stderr
    assert not (tmp_path / "lake" / "ingest").exists()


def _model_rows(model_dir) -> dict[str, list[tuple]]:
    """Every table of a run's model, as sorted rows (to compare engines)."""
    con = duckdb.connect()
    rows = "SELECT * FROM read_parquet('{}/*.parquet', hive_partitioning = false)"  # not the run's path keys
    return {t.name: sorted(con.execute(rows.format(t)).fetchall(), key=repr)
            for t in sorted(model_dir.iterdir()) if t.is_dir()}


def _run_summary(proc) -> dict:
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads(open(proc.stdout.strip().splitlines()[-1]).read())


@pytest.mark.parametrize("profile, variants, engines", [
    ("cnam_study", None, ("duckdb", "spark-local", "duckdb")),
    (None, "dcir_only", ("duckdb",)),
])
def test_real_format_extract_through_the_release_dag(profile, variants, engines, tmp_path):
    """A real-format extract as the generator writes it (the cnam_study profile: NUM_ENQ, SAS datetimes,
    Windows-1252, CRLF, float-written integers, 3-character return codes, decimal commas, catalogued
    tables the model does not use, an uncatalogued file, an SSR chaining table without FHO_RET/PMS_RET,
    stays admitted before the window, unreadable stay dates) and a DCIR-only extract, run with
    `--profile auto` through the release DAG: published, the truth check matches, no blocking check
    fails, and the summary says what was detected, nulled, uncatalogued and missing. The CNAM extract
    runs on DuckDB, then on Spark (same rows in every model table), then on DuckDB again (byte-identical
    model files)."""
    from snds_synth import generate
    from spark_jobs.audit import open_audit

    delivery = tmp_path / "delivery"
    truth = generate(delivery, n=200, seed=11, years=(2016, 2018), profile=profile, variants=variants, quiet=True)
    models = []
    for engine in engines:
        summary = _run_summary(run_release_dag(tmp_path, delivery, engine, "2018-12", args=["--profile", "auto"]))
        assert summary["status"] == "success" and summary["engine"] == engine
        assert summary["truth_check"]["status"] == "match", summary["truth_check"]
        assert summary["steps"]["publish"]["status"] == "success"
        assert model_rows_of(summary) == truth["events"]
        checks = [c for g in ("gate_clean", "gate_model") for c in summary["steps"][g]["checks"]]
        assert not [c["name"] for c in checks if c["status"] == "fail" and c["severity"] == "blocking"]
        models.append(Path(summary["steps"]["model"]["outputs"]["model"]))
    d = summary["delivery"]
    assert d["profile"]["source"] == "auto"
    with open_audit(str(tmp_path / "audit" / "audit.db")) as audit:
        record = audit.run_record(summary["run_id"])
    assert record["status"] == "success" and record["published"]
    assert record["delivery_profile"] == d["profile"]  # the effective profile, detected
    if profile == "cnam_study":
        assert (d["profile"]["patient_id_column"], d["profile"]["encoding"], d["profile"]["decimal_separator"]) == (
            "NUM_ENQ", "cp1252", ",")
        assert d["uncatalogued"] == [["ETUDE_CONSENTEMENT.csv", "ETUDE_CONSENTEMENT"]]
        nulled: dict[str, int] = {}  # the unreadable stay dates the generator planted, per column
        for e in truth["files"].values():
            for k, n in e.get("nulled", {}).items():
                key = f"{e['table']}.{k.replace('|', ': ')}"
                nulled[key] = nulled.get(key, 0) + n
        assert nulled and d["nulled_cells"] == nulled
        assert {(m["table"], tuple(m["columns"]), m["effect"]) for m in d["missing_rule_inputs"]} == {
            ("T_SSRaaC", ("FHO_RET", "PMS_RET"), "partial")}
        # the partial chaining rule is a warning, not a refusal
        assert {c["name"]: (c["severity"], c["status"]) for c in checks}["rule_inputs_partial"] == ("warning", "fail")
        duck, spark, again = models
        assert _model_rows(spark) == _model_rows(duck)
        assert tree_bytes(again) == tree_bytes(duck)
    else:
        assert "PMSI_MCO" in d["sources_absent"] and "DCIR" in d["sources_present"]
        assert summary["steps"]["model"]["tables"]["stays"]["rows"] == 0
