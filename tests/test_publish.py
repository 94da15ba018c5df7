"""Write-audit-publish (spark_jobs/publish.py) and SQL access (spark_jobs/catalog.py).

A real model (the pipeline on the session's synthetic delivery, DuckDB) is laid out as runs of a lake:
the model under `model/release=R/run=<run>/`, the step reports under `runs/release=R/<run>/steps/`,
with hand-made gate reports (the format of spark_jobs/quality.py). A second run of a release differs
from the first (fewer patients, its report saying so), so that which version a view reads is visible.
"""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from s3server import new_bucket, s3_client
from spark_jobs import catalog, lakefs
from spark_jobs.publish import (PublishError, current_manifest, list_versions, previous_release_manifest, publish,
                                switch)
from spark_jobs.steprun import run_tag

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REGION = "fr-paris"
R1, R2 = "2024-06", "2024-07"
#: Run ids sort in publication order (versions published within the same second are listed by run id).
RUN_A, RUN_B = "manual__2024-07-01T09:00:00+00:00", "scheduled__2024-07-02T00:00:00+00:00"
FEW_PATIENTS = 100


@pytest.fixture(scope="module")
def model_output(synth_pipeline):
    """(model zone, model step report sections) of the pipeline on the synthetic delivery."""
    out, reports = synth_pipeline
    return out / "model", reports["model"]


def gate_report(step: str, release: str, run_id: str, status: str = "success") -> dict:
    failed = int(status != "success")
    return {
        "step": step, "stage": step.split("_")[1], "status": status, "engine": "duckdb", "release": release,
        "run_id": run_id, "started_at": "2024-07-01T00:00:00+00:00", "seconds": 0.5,
        "checks": [
            {"name": "patients_key_unique", "kind": "unique", "table": "patients", "severity": "blocking",
             "status": "fail" if failed else "pass", "observed": failed, "threshold": 0, "total": 300,
             "description": "patient_id is unique in patients", "message": f"{failed} duplicate keys"},
            {"name": "drug_ddd_coverage", "kind": "ratio", "table": "drug_dispensations", "severity": "warning",
             "status": "fail", "observed": 0.4, "threshold": 0.5, "total": 1000,
             "description": "share of dispensations with a DDD", "message": "40% < 50%"},
            {"name": "rows_drift", "kind": "drift", "table": "patients", "severity": "warning", "status": "skipped",
             "observed": None, "threshold": 0.2, "total": None, "description": "row drift", "message": "no baseline"},
        ],
        "totals": {"checks": 3, "passed": 1 - failed, "failed": failed, "warnings": 1, "skipped": 1},
    }


def lay_out_run(lake: Path, release: str, run_id: str, model_output, *, patients: int | None = None,
                gates: dict | None = None, model_status: str = "success") -> dict:
    """A run of `release` in the lake as the release DAG leaves it before publish; `patients` keeps only
    that many patients (the model report saying so); `gates`: {gate: status or None (absent)}."""
    source, sections = model_output
    tag = run_tag(run_id)
    zone = lake / "model" / f"release={release}" / f"run={tag}"
    shutil.copytree(source, zone)
    tables = copy.deepcopy(sections["tables"])
    if patients is not None:
        part = zone / "patients" / "part-00000.parquet"
        smaller = part.with_name("smaller.parquet")
        duckdb.execute(f"COPY (SELECT * FROM read_parquet('{part}', hive_partitioning = false) "
                       f"ORDER BY patient_id LIMIT {patients}) TO '{smaller}' (FORMAT parquet)")
        os.replace(smaller, part)
        tables["patients"]["rows"] = patients
    run_dir = lake / "runs" / f"release={release}" / tag
    lakefs.write_json(run_dir / "steps" / "model.json", {
        "step": "model", "engine": "duckdb", "release": release, "run_id": run_id,
        **{k: v for k, v in sections.items() if k != "status"}, "status": model_status, "tables": tables})
    for gate, status in (gates or {"gate_clean": "success", "gate_model": "success"}).items():
        if status is not None:
            lakefs.write_json(run_dir / "steps" / f"{gate}.json", gate_report(gate, release, run_id, status))
    return {"run_dir": run_dir, "model_zone": zone, "rows": {t: v["rows"] for t, v in tables.items()}}


def do_publish(lake, release: str, run_id: str, run: dict, **kwargs) -> dict:
    return publish(lake, region=REGION, release=release, run_id=run_id, run_dir=run["run_dir"],
                   model_zone=run["model_zone"], **kwargs)


def query(lake, sql: str) -> list[tuple]:
    con = duckdb.connect(str(lake / "catalog" / f"{REGION}.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def pointer(lake, release: str) -> Path:
    return lake / "published" / f"release={release}" / "CURRENT.json"


def version_file(lake, release: str, run_id: str) -> Path:
    return lake / "published" / f"release={release}" / "versions" / f"{run_tag(run_id)}.json"


def test_publish_switch_history_and_rollback(tmp_path, model_output):
    lake = tmp_path / "lake"
    run_a = lay_out_run(lake, R1, RUN_A, model_output)
    run_b = lay_out_run(lake, R1, RUN_B, model_output, patients=FEW_PATIENTS)
    all_patients = run_a["rows"]["patients"]
    assert all_patients > FEW_PATIENTS

    returned = do_publish(lake, R1, RUN_A, run_a, report_html=run_a["run_dir"] / "feasibility.html")
    manifest = json.loads(pointer(lake, R1).read_text())
    assert returned == manifest
    assert pointer(lake, R1).read_bytes() == version_file(lake, R1, RUN_A).read_bytes()
    assert manifest["release"] == R1 and manifest["run_id"] == RUN_A and manifest["region"] == REGION
    assert manifest["model"] == str(run_a["model_zone"]) and manifest["previous"] is None
    assert manifest["report"] == str(run_a["run_dir"] / "feasibility.html")
    assert {t: v["rows"] for t, v in manifest["tables"].items()} == run_a["rows"]
    assert manifest["tables"]["drug_dispensations"]["location"] == str(run_a["model_zone"] / "drug_dispensations")
    assert {"name": "ddd", "type": "DECIMAL(18,3)"} in manifest["tables"]["drug_dispensations"]["columns"]
    assert manifest["gates"]["gate_model"] == {"status": "success", "totals": gate_report(
        "gate_model", R1, RUN_A)["totals"], "warnings": ["drug_ddd_coverage"]}
    step = json.loads((run_a["run_dir"] / "steps" / "publish.json").read_text())
    assert step["status"] == "success" and step["previous"] is None and step["run_id"] == RUN_A
    assert step["manifest"] == str(pointer(lake, R1)) and step["version"] == str(version_file(lake, R1, RUN_A))
    assert step["catalog"] == str(lake / "catalog" / f"{REGION}.duckdb")
    assert step["totals"] == {"tables": 14, "rows": sum(run_a["rows"].values())}
    assert query(lake, "SELECT count(*) FROM main.patients") == [(all_patients,)]

    # A second run of the release: CURRENT switches, the first version stays readable.
    do_publish(lake, R1, RUN_B, run_b)
    manifest_b = current_manifest(lake, R1)
    assert manifest_b["run_id"] == RUN_B
    assert manifest_b["previous"] == {"run_id": RUN_A, "published_at": manifest["published_at"]}
    assert json.loads((run_b["run_dir"] / "steps" / "publish.json").read_text())["previous"] == RUN_A
    assert query(lake, "SELECT count(*) FROM main.patients") == [(FEW_PATIENTS,)]
    assert query(lake, "SELECT count(*) FROM release_2024_06.patients") == [(FEW_PATIENTS,)]
    assert query(lake, "SELECT run_id, is_current, count(*) FROM history.patients GROUP BY ALL ORDER BY 1") == [
        (RUN_A, False, all_patients), (RUN_B, True, FEW_PATIENTS)]
    first = query(lake, "SELECT count(*), count(DISTINCT patient_id) FROM history.diagnoses "
                        f"WHERE run_id = '{RUN_A}'")
    assert first == [(run_a["rows"]["diagnoses"],
                      query(lake, "SELECT count(DISTINCT patient_id) FROM main.diagnoses")[0][0])]
    assert [(m["run_id"], m["current"]) for m in list_versions(lake)] == [(RUN_A, False), (RUN_B, True)]
    assert query(lake, "SELECT run_id, is_current, previous_run_id FROM main.snds_published_versions ORDER BY 1") == [
        (RUN_A, False, None), (RUN_B, True, RUN_A)]
    assert query(lake, "SELECT gate, status, warning_checks FROM main.snds_published_gates "
                       f"WHERE run_id = '{RUN_B}' ORDER BY gate") == [
        ("gate_clean", "success", ["drug_ddd_coverage"]), ("gate_model", "success", ["drug_ddd_coverage"])]
    assert query(lake, f"SELECT rows FROM main.snds_published_tables WHERE run_id = '{RUN_B}' "
                       "AND table_name = 'patients'") == [(FEW_PATIENTS,)]
    # Every column of every model table, typed as the model writes them.
    assert query(lake, "SELECT data_type FROM duckdb_columns() WHERE schema_name = 'main' "
                       "AND table_name = 'drug_dispensations' AND column_name = 'ddd'") == [("DECIMAL(18,3)",)]

    # Rollback: the first version is current again, byte for byte its manifest.
    done = switch(lake, region=REGION, release=R1, run_id=RUN_A)
    assert done["previous"] == RUN_B and done["run_id"] == RUN_A
    assert pointer(lake, R1).read_bytes() == version_file(lake, R1, RUN_A).read_bytes()
    assert query(lake, "SELECT count(*) FROM main.patients") == [(all_patients,)]
    assert [(m["run_id"], m["current"]) for m in list_versions(lake, R1)] == [(RUN_A, True), (RUN_B, False)]
    with pytest.raises(PublishError, match="never published"):
        switch(lake, region=REGION, release=R1, run_id="never")
    # Nothing was ever deleted: both model versions are still there.
    assert (run_a["model_zone"] / "patients").is_dir() and (run_b["model_zone"] / "patients").is_dir()


def test_a_second_release_and_the_previous_release(tmp_path, model_output):
    lake = tmp_path / "lake"
    run_a = lay_out_run(lake, R1, RUN_A, model_output)
    run_c = lay_out_run(lake, R2, RUN_B, model_output, patients=FEW_PATIENTS)
    assert previous_release_manifest(lake, R1) is None
    do_publish(lake, R1, RUN_A, run_a)
    do_publish(lake, R2, RUN_B, run_c)

    assert query(lake, "SELECT count(*) FROM main.patients") == [(FEW_PATIENTS,)]  # the latest release
    assert query(lake, "SELECT count(*) FROM release_2024_06.patients") == [(run_a["rows"]["patients"],)]
    assert query(lake, "SELECT count(*) FROM release_2024_07.patients") == [(FEW_PATIENTS,)]
    assert query(lake, "SELECT release, count(*) FROM history.patients WHERE is_current GROUP BY 1 ORDER BY 1") == [
        (R1, run_a["rows"]["patients"]), (R2, FEW_PATIENTS)]
    assert query(lake, "SELECT release, schema_name, is_latest_release FROM main.snds_published_versions "
                       "ORDER BY 1") == [(R1, "release_2024_06", False), (R2, "release_2024_07", True)]

    assert previous_release_manifest(lake, R2)["run_id"] == RUN_A
    assert previous_release_manifest(lake, R2) == current_manifest(lake, R1)
    assert previous_release_manifest(lake, R1) is None
    assert previous_release_manifest(lake, "2024-08")["release"] == R2
    # A release id sorting before the first published one has no baseline either.
    assert previous_release_manifest(lake, "2023-12") is None


def test_republishing_a_run_rewrites_the_same_bytes(tmp_path, model_output):
    lake = tmp_path / "lake"
    run_a = lay_out_run(lake, R1, RUN_A, model_output)
    do_publish(lake, R1, RUN_A, run_a)
    before = (pointer(lake, R1).read_bytes(), version_file(lake, R1, RUN_A).read_bytes())
    do_publish(lake, R1, RUN_A, run_a)
    assert (pointer(lake, R1).read_bytes(), version_file(lake, R1, RUN_A).read_bytes()) == before
    report = json.loads((run_a["run_dir"] / "steps" / "publish.json").read_text())
    assert report["status"] == "success" and report["previous"] is None
    assert len(list_versions(lake)) == 1


@pytest.mark.parametrize("defect, message", [
    ("no_gate_model", "gate_model.json: missing"),
    ("failed_gate_model", "gate_model.json: status 'failed'"),
    ("failed_gate_clean", "gate_clean.json: status 'failed'"),
    ("failed_model", "model.json: status 'failed'"),
    ("row_count", "reports 7 for biology"),
    ("missing_table", "model table devices has no Parquet file"),
    ("other_run", "written for release '2024-06' run 'another-run'"),
])
def test_publish_refuses_a_run_not_audited(tmp_path, model_output, defect, message):
    lake = tmp_path / "lake"
    run_a = lay_out_run(lake, R1, RUN_A, model_output)
    do_publish(lake, R1, RUN_A, run_a)
    current = pointer(lake, R1).read_bytes()
    catalog_file = lake / "catalog" / f"{REGION}.duckdb"
    catalog_before = catalog_file.stat().st_mtime_ns

    gates = {"gate_clean": "success", "gate_model": "success"}
    if defect == "no_gate_model":
        gates["gate_model"] = None
    elif defect.startswith("failed_gate"):
        gates[defect[len("failed_"):]] = "failed"
    run_b = lay_out_run(lake, R1, RUN_B, model_output, gates=gates,
                        model_status="failed" if defect == "failed_model" else "success")
    steps = run_b["run_dir"] / "steps"
    if defect == "row_count":
        report = json.loads((steps / "model.json").read_text())
        report["tables"]["biology"]["rows"] = 7
        lakefs.write_json(steps / "model.json", report)
    elif defect == "missing_table":
        shutil.rmtree(run_b["model_zone"] / "devices")
    elif defect == "other_run":
        lakefs.write_json(steps / "gate_model.json", gate_report("gate_model", R1, "another-run"))

    with pytest.raises(PublishError, match=message.replace("(", r"\(")) as refused:
        do_publish(lake, R1, RUN_B, run_b)
    assert str(run_b["run_dir"]) in str(refused.value) or str(run_b["model_zone"]) in str(refused.value)
    # Nothing switched: the pointer, the versions and the catalog are as they were.
    assert pointer(lake, R1).read_bytes() == current
    assert not version_file(lake, R1, RUN_B).exists()
    assert catalog_file.stat().st_mtime_ns == catalog_before
    step = json.loads((steps / "publish.json").read_text())
    assert step["status"] == "failed" and message.split(":")[-1].strip()[:20] in step["error"]
    assert step["error"].startswith("PublishError: ")


def test_the_pointer_switch_is_atomic(tmp_path, model_output, monkeypatch):
    """CURRENT.json is replaced by a rename of a complete file written aside (readers see the old
    manifest or the new one, whole); a failure after the version's manifest is written and before the
    switch leaves the old version current."""
    lake = tmp_path / "lake"
    run_a = lay_out_run(lake, R1, RUN_A, model_output)
    run_b = lay_out_run(lake, R1, RUN_B, model_output, patients=FEW_PATIENTS)
    do_publish(lake, R1, RUN_A, run_a)
    current = pointer(lake, R1).read_bytes()

    real_write = lakefs.write_bytes

    def failing_switch(location, data):
        if str(location).endswith("CURRENT.json"):
            raise OSError("simulated crash before the switch")
        real_write(location, data)

    monkeypatch.setattr(lakefs, "write_bytes", failing_switch)
    with pytest.raises(OSError):
        do_publish(lake, R1, RUN_B, run_b)
    monkeypatch.setattr(lakefs, "write_bytes", real_write)
    assert pointer(lake, R1).read_bytes() == current
    assert version_file(lake, R1, RUN_B).exists()  # written first, but not current
    assert [(m["run_id"], m["current"]) for m in list_versions(lake)] == [(RUN_A, True), (RUN_B, False)]
    assert query(lake, "SELECT count(*) FROM main.patients") == [(run_a["rows"]["patients"],)]
    assert json.loads((run_b["run_dir"] / "steps" / "publish.json").read_text())["status"] == "failed"

    # The retried publish switches by renaming a complete manifest over CURRENT.json: at the instant
    # of the rename, the old CURRENT.json is still whole and the new one is complete aside.
    real_replace = os.replace
    seen = []

    def watching_replace(src, dst):
        if str(dst).endswith("CURRENT.json"):
            seen.append((json.loads(Path(dst).read_text())["run_id"], json.loads(Path(src).read_text())["run_id"],
                         Path(src).parent == Path(dst).parent))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", watching_replace)
    do_publish(lake, R1, RUN_B, run_b)
    assert seen == [(RUN_A, RUN_B, True)]
    assert current_manifest(lake, R1)["run_id"] == RUN_B


def test_catalog_sql_command(tmp_path, model_output, capsys, monkeypatch):
    lake = tmp_path / "lake"
    run_a = lay_out_run(lake, R1, RUN_A, model_output)
    do_publish(lake, R1, RUN_A, run_a)
    path = str(lake / "catalog" / f"{REGION}.duckdb")
    capsys.readouterr()

    assert catalog.main(["sql", "--catalog", path, "-c",
                         "SELECT count(*) AS n_patients FROM patients"]) == 0
    out = capsys.readouterr().out
    assert "n_patients" in out and str(run_a["rows"]["patients"]) in out

    # Read-only: the catalog cannot be changed by a query.
    assert catalog.main(["sql", "--catalog", path, "-c", "CREATE TABLE x (a INTEGER)"]) == 1
    assert "read-only" in capsys.readouterr().err

    # Statements from stdin when it is not a terminal; .tables lists the views.
    monkeypatch.setattr(sys, "stdin", io.StringIO(
        "SELECT 6 *\n  7 AS answer;\n.tables\nSELECT count(*) AS n FROM history.stays WHERE run_id = '"
        + RUN_A + "';\n.quit\nSELECT 'not run';\n"))
    assert catalog.main(["sql", "--catalog", path]) == 0
    out = capsys.readouterr().out
    assert "answer" in out and "42" in out and "drug_dispensations" in out and "history" in out
    assert str(run_a["rows"]["stays"]) in out and "not run" not in out

    # As `make sql` runs it: a separate process, a query piped in.
    proc = subprocess.run([sys.executable, "-m", "spark_jobs.catalog", "sql", "--catalog", path],
                          input="SELECT count(*) AS n FROM release_2024_06.diagnoses;\n", capture_output=True,
                          text=True, cwd=PROJECT_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert str(run_a["rows"]["diagnoses"]) in proc.stdout

    assert catalog.main(["sql", "--catalog", str(tmp_path / "none.duckdb"), "-c", "SELECT 1"]) == 1


def test_publish_command_line(tmp_path, model_output, capsys):
    from spark_jobs.publish import main

    lake = tmp_path / "lake"
    run_a = lay_out_run(lake, R1, RUN_A, model_output)
    run_b = lay_out_run(lake, R1, RUN_B, model_output, patients=FEW_PATIENTS)
    do_publish(lake, R1, RUN_A, run_a)
    do_publish(lake, R1, RUN_B, run_b)
    capsys.readouterr()
    common = ["--lake", str(lake), "--region", REGION]

    assert main([*common, "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and RUN_A in lines[0] and "CURRENT" not in lines[0] and lines[1].endswith("CURRENT")
    assert main([*common, "--json", "show", "--release", R1, "--run-id", RUN_A]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["run_id"] == RUN_A and shown["current"] is False
    assert main([*common, "show", "--release", R1]) == 0
    text = capsys.readouterr().out
    assert f"run {RUN_B} · CURRENT" in text and f"replacing run {RUN_A}" in text
    assert "warnings: drug_ddd_coverage" in text
    assert main([*common, "switch", "--release", R1, "--run-id", RUN_A]) == 0
    assert f"run {RUN_A} is current (was {RUN_B})" in capsys.readouterr().out
    assert current_manifest(lake, R1)["run_id"] == RUN_A
    assert main([*common, "show", "--release", "1999-01"]) == 1
    assert "not published" in capsys.readouterr().err


def test_catalog_refresh_command_and_an_unreadable_past_version(tmp_path, model_output, capsys):
    """A past version whose files were removed by hand is left out of the history (with a warning);
    the current versions stay queryable."""
    lake = tmp_path / "lake"
    run_a = lay_out_run(lake, R1, RUN_A, model_output)
    run_b = lay_out_run(lake, R1, RUN_B, model_output, patients=FEW_PATIENTS)
    do_publish(lake, R1, RUN_A, run_a)
    do_publish(lake, R1, RUN_B, run_b)
    shutil.rmtree(run_a["model_zone"])
    assert catalog.main(["refresh", "--lake", str(lake), "--region", REGION]) == 0
    assert "releases 2024-06 (latest 2024-06), 2 versions" in capsys.readouterr().out
    assert query(lake, "SELECT DISTINCT run_id FROM history.patients") == [(RUN_B,)]
    assert query(lake, "SELECT count(*) FROM main.patients") == [(FEW_PATIENTS,)]
    with pytest.raises(PublishError, match="are gone"):
        switch(lake, region=REGION, release=R1, run_id=RUN_A)


@pytest.mark.parametrize("duckdb_type, hive", [
    ("VARCHAR", "string"), ("INTEGER", "int"), ("BIGINT", "bigint"), ("DATE", "date"), ("DOUBLE", "double"),
    ("BOOLEAN", "boolean"), ("DECIMAL(18,3)", "decimal(18,3)"), ("decimal(10, 2)", "decimal(10,2)"),
])
def test_athena_type_mapping(duckdb_type, hive):
    assert catalog.athena_type(duckdb_type) == hive


def test_athena_type_mapping_refuses_unknown_types():
    with pytest.raises(catalog.CatalogError, match="STRUCT"):
        catalog.athena_type("STRUCT(a INTEGER)")


def test_schema_names_stay_distinct():
    assert catalog.schema_names(["2024-06"]) == {"2024-06": "release_2024_06"}
    names = catalog.schema_names(["2024-06", "2024.06", "x"])
    assert names["x"] == "release_x" and len(set(names.values())) == 3
    assert all(n.startswith("release_2024_06_") for r, n in names.items() if r != "x")
    assert catalog.glue_database("fr-paris") == "snds_fr_paris"


def _athena_statements(ddl: str):
    import sqlglot

    statements = sqlglot.parse(ddl, read="athena")
    assert all(s is not None for s in statements)
    return statements


def test_athena_ddl_parses_and_names_the_current_versions(tmp_path, model_output):
    from spark_jobs.model import load_model_schema

    lake = tmp_path / "lake"
    run_a = lay_out_run(lake, R1, RUN_A, model_output)
    run_b = lay_out_run(lake, R1, RUN_B, model_output, patients=FEW_PATIENTS)
    run_c = lay_out_run(lake, R2, RUN_A, model_output)
    for release, run_id, run in ((R1, RUN_A, run_a), (R1, RUN_B, run_b), (R2, RUN_A, run_c)):
        do_publish(lake, release, run_id, run)
    ddl = (lake / "catalog" / "athena.sql").read_text()
    assert ddl == catalog.athena_ddl(lake, REGION, list_versions(lake))
    statements = _athena_statements(ddl)
    schema = load_model_schema()
    # database; per table: table, 2 releases x (add, set), latest view, versions table, 3 version partitions
    assert len(statements) == 1 + len(schema) * (1 + 4 + 1 + 1 + 3)

    sql = [s.sql("athena", comments=False) for s in statements]
    assert sql[0] == "CREATE DATABASE IF NOT EXISTS snds_fr_paris"
    creates = [s for s in statements if s.key == "create" and s.args.get("kind") == "TABLE"]
    assert sorted(c.this.this.name for c in creates) == sorted([*schema, *(f"{t}_versions" for t in schema)])
    drugs = next(c for c in creates if c.this.this.name == "drug_dispensations")
    columns = {col.name: col.args["kind"].sql("hive") for col in drugs.this.expressions}
    assert columns["ddd"] == "DECIMAL(18, 3)" and columns["patient_id"] == "STRING"
    assert list(columns) == [c["name"] for c in schema["drug_dispensations"]["columns"]]
    assert f"LOCATION '{lake}/model/'" in drugs.sql("athena")
    assert "PARTITIONED BY (`release` STRING)" in drugs.sql("athena")

    # Each release's partition: added if missing, then set to the release's current version.
    for release, run in ((R1, run_b), (R2, run_c)):
        location = f"'{run['model_zone']}/patients/'"
        spec = f"PARTITION(release = '{release}')"
        assert f"ALTER TABLE snds_fr_paris.patients ADD IF NOT EXISTS {spec} LOCATION {location}" in sql
        assert f"ALTER TABLE snds_fr_paris.patients {spec} SET LOCATION {location}" in sql
    assert not any(f"{run_a['model_zone']}/patients/'" in s and "patients ADD" in s and "run_id" not in s for s in sql)
    assert ("CREATE OR REPLACE VIEW snds_fr_paris.patients_latest AS SELECT * FROM snds_fr_paris.patients "
            f"WHERE release = '{R2}'") in sql
    # Every published version is a partition of <table>_versions.
    for release, run_id, run in ((R1, RUN_A, run_a), (R1, RUN_B, run_b), (R2, RUN_A, run_c)):
        assert (f"ALTER TABLE snds_fr_paris.stays_versions ADD IF NOT EXISTS PARTITION(release = '{release}', "
                f"run_id = '{run_id}') LOCATION '{run['model_zone']}/stays/'") in sql


def test_publish_on_an_s3_lake(s3_env, tmp_path, model_output):
    """The model zone versioned on S3 (a `_CURRENT` pointer), reports on S3: CURRENT.json, the catalog
    and the Athena DDL are written there, with s3:// locations, and the catalog is queryable."""
    client = s3_client(s3_env)
    bucket = new_bucket(client, "publish")
    lake = f"s3://{bucket}/lake"
    local = tmp_path / "local"
    run = lay_out_run(local, R1, RUN_A, model_output)
    # The same run on S3, as the model step writes it there: a version switched in by a pointer.
    zone = f"{lake}/model/release={R1}/run={run_tag(RUN_A)}"
    version = lakefs.new_version(zone, run_tag(RUN_A))
    for path in sorted(run["model_zone"].rglob("*.parquet")):
        lakefs.write_bytes(version / path.relative_to(run["model_zone"]).as_posix(), path.read_bytes())
    lakefs.switch_version(zone, version)
    run_dir = f"{lake}/runs/release={R1}/{run_tag(RUN_A)}"
    for report in sorted((run["run_dir"] / "steps").glob("*.json")):
        lakefs.write_bytes(f"{run_dir}/steps/{report.name}", report.read_bytes())

    returned = publish(lake, region=REGION, release=R1, run_id=RUN_A, run_dir=run_dir, model_zone=zone,
                       report_html=f"{run_dir}/feasibility.html")
    report = lakefs.read_json(f"{run_dir}/steps/publish.json")
    assert report["status"] == "success" and returned == lakefs.read_json(report["manifest"])
    assert report["manifest"] == f"{lake}/published/release={R1}/CURRENT.json"
    manifest = lakefs.read_json(report["manifest"])
    assert manifest["model"] == str(version) and manifest["model"].startswith(f"{zone}/_v/")
    assert manifest["tables"]["patients"]["location"] == f"{version}/patients"
    assert manifest["report"] == f"{run_dir}/feasibility.html"
    assert lakefs.read_bytes(f"{lake}/published/release={R1}/versions/{run_tag(RUN_A)}.json") == \
        lakefs.read_bytes(report["manifest"])
    assert [m["run_id"] for m in list_versions(lake)] == [RUN_A]

    # The catalog is on S3; its views read the S3 files (through the lake's filesystem here).
    assert report["catalog"] == f"{lake}/catalog/{REGION}.duckdb"
    con = catalog.open_catalog(report["catalog"])
    try:
        assert con.execute("SELECT count(*) FROM main.patients").fetchall() == [(run["rows"]["patients"],)]
        assert con.execute(f"SELECT count(*) FROM history.stays WHERE run_id = '{RUN_A}'").fetchall() == [
            (run["rows"]["stays"],)]
    finally:
        con.close()

    ddl = lakefs.read_bytes(report["athena_ddl"]).decode()
    assert report["athena_ddl"] == f"{lake}/catalog/athena.sql"
    sql = [s.sql("athena", comments=False) for s in _athena_statements(ddl)]
    assert f"LOCATION '{lake}/model/'" in ddl
    assert (f"ALTER TABLE snds_fr_paris.biology PARTITION(release = '{R1}') SET LOCATION "
            f"'{version}/biology/'") in sql


def test_a_catalog_built_while_another_version_was_switched_in_is_rebuilt(tmp_path, model_output, monkeypatch):
    """Publishes of two releases of a region may run at once: a catalog built from manifests that
    changed meanwhile is built again, so the one left in place reflects every switch."""
    lake = tmp_path / "lake"
    run_a = lay_out_run(lake, R1, RUN_A, model_output)
    run_b = lay_out_run(lake, R1, RUN_B, model_output, patients=FEW_PATIENTS)
    do_publish(lake, R1, RUN_A, run_a)
    do_publish(lake, R1, RUN_B, run_b)
    real_build, builds = catalog._build, []

    def build_during_a_switch(path, releases, uses_s3):
        builds.append(releases[R1]["current"]["run_id"])
        if len(builds) == 1:  # another process switches the release back to RUN_A meanwhile
            lakefs.write_bytes(pointer(lake, R1), version_file(lake, R1, RUN_A).read_bytes())
        return real_build(path, releases, uses_s3)

    monkeypatch.setattr(catalog, "_build", build_during_a_switch)
    catalog.refresh(lake, REGION)
    assert builds == [RUN_B, RUN_A]
    assert query(lake, "SELECT count(*) FROM main.patients") == [(run_a["rows"]["patients"],)]
    assert f"/run={run_tag(RUN_A)}/patients/'" in (lake / "catalog" / "athena.sql").read_text()
    assert not [p for p in (lake / "catalog").iterdir() if p.name.startswith(".")]  # nothing left aside
