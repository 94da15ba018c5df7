"""The run audit database (spark_jobs.audit), the same tests on a SQLite file and on a real PostgreSQL
server (tests/pgserver.py, started once per session): a real pipeline's reports (ingest, clean, merge,
model on DuckDB over the session's synthetic delivery) plus a gate and a publish report, assembled by
spark_jobs.report.assemble_summary, recorded and read back field by field."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json

import pytest
import sqlalchemy as sa

from spark_jobs import audit as audit_mod
from spark_jobs import lakefs
from spark_jobs.audit import (SCHEMA_VERSION, AuditSchemaError, RunNotFound, config_hash, main, normalise_url,
                              open_audit)
from spark_jobs.report import assemble_summary

REGION, RELEASE = "local", "2026-01"
T0 = dt.datetime(2026, 2, 3, 4, 0, tzinfo=dt.timezone.utc)
PG_PASSWORD = "audit-pw-never-shown"
_databases = itertools.count()

#: A hand-made model gate report (the format spark_jobs/quality.py writes): a failed warning, a
#: passed blocking check, a skipped one.
GATE_CHECKS = [
    {"name": "patients_key_unique", "kind": "unique", "table": "patients", "severity": "blocking",
     "status": "pass", "observed": 0, "threshold": {"threshold": 0.0}, "total": 300,
     "description": "patient_id is unique in patients", "message": "0 of 300"},
    {"name": "diagnoses_code_null_rate", "kind": "null_rate", "table": "diagnoses", "severity": "warning",
     "status": "fail", "observed": 12, "threshold": {"max_rate": 0.01}, "total": 400,
     "description": "few diagnoses without a code", "message": "12 of 400"},
    {"name": "drift_rows", "kind": "drift", "table": None, "severity": "warning", "status": "skipped",
     "observed": None, "threshold": None, "total": None, "description": "rows vs the previous release",
     "message": "no previous published release"},
]


@pytest.fixture(params=["sqlite", "postgresql"])
def audit_url(request, tmp_path):
    """A fresh, empty audit database: a SQLite file (its directory not created yet), or a database of
    its own on the session's PostgreSQL server, owned by a role with a password."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/audit/audit.db"
    pg = request.getfixturevalue("postgres_server")
    return pg.create_database(f"snds_audit_{next(_databases)}", owner="snds_audit", password=PG_PASSWORD)


@pytest.fixture(scope="module")
def pipeline_reports(synth_pipeline) -> dict:
    """Each step's report of a real run (DuckDB) on the synthetic delivery, as run_step writes them."""
    sections = synth_pipeline[1]
    seconds = {"ingest": 3.512, "clean_dcir": 0.871, "clean_pmsi": 0.804, "merge": 0.79, "model": 0.702}
    reports = {}
    for i, (step, body) in enumerate(sections.items()):
        reports[step] = {"step": step, "engine": "duckdb", "release": RELEASE, "run_id": "?",
                         "started_at": (T0 + dt.timedelta(minutes=i)).isoformat(), **body,
                         "status": "success", "seconds": seconds[step]}
    reports["gate_model"] = {
        "step": "gate_model", "stage": "model", "status": "success", "engine": "duckdb", "release": RELEASE,
        "run_id": "?", "started_at": (T0 + dt.timedelta(minutes=10)).isoformat(), "seconds": 1.25,
        "checks": GATE_CHECKS, "totals": {"checks": 3, "passed": 1, "failed": 0, "warnings": 1, "skipped": 1}}
    reports["publish"] = {"step": "publish", "status": "success", "engine": "duckdb", "release": RELEASE, "run_id": "?",
                          "started_at": (T0 + dt.timedelta(minutes=11)).isoformat(), "seconds": 0.5,
                          "manifest": f"/lake/published/release={RELEASE}/CURRENT.json",
                          "version": f"/lake/published/release={RELEASE}/versions/RUN.json"}
    return reports


def write_run(tmp_path, reports: dict, synth_delivery, *, run_id: str, release: str = RELEASE, region: str = REGION,
              started: dt.datetime = T0, only=None, override: dict | None = None) -> tuple[dict, str]:
    """The run's step reports under `<run dir>/steps/` and the summary assemble_summary makes of them."""
    run_dir = tmp_path / "runs" / f"release={release}" / run_id.replace(":", "_")
    (run_dir / "steps").mkdir(parents=True)
    for step, report in reports.items():
        if only is None or step in only:
            report = {**report, "release": release, "run_id": run_id, **(override or {}).get(step, {})}
            (run_dir / "steps" / f"{step}.json").write_text(json.dumps(report))
    extra = {"dag_id": f"snds_release__{region}", "trigger": "manual", "run_type": "manual", "triggered_by": "alice",
             "config_hash": "c" * 64, "started_at": started.isoformat(), "steps_selected": sorted(only or reports),
             "dry_run": False}
    path = assemble_summary(run_dir, region=region, release=release, run_id=run_id, engine="duckdb",
                            input_uri=str(synth_delivery), truth_manifest=synth_delivery / "_truth" / "manifest.json",
                            extra=extra, selected_steps=list(only or reports))
    return lakefs.read_json(path), str(path)


def start(audit, summary: dict, *, triggered_by="alice") -> None:
    audit.record_run_start(region=summary["region"], release=summary["release"], run_id=summary["run_id"],
                           dag_id=summary["dag_id"], trigger="manual", run_type="manual", triggered_by=triggered_by,
                           engine="duckdb", code_version="0.1.0+gabc", config_hash="c" * 64,
                           input_uri=summary["input"], started_at=summary["started_at"])


def all_rows(url: str) -> dict:
    """Every row of every audit table, sorted: to compare two recordings."""
    engine = sa.create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            return {t.name: sorted((tuple(r) for r in conn.execute(sa.select(t))), key=repr)
                    for t in audit_mod.metadata.sorted_tables if t.name != "audit_schema_version"}
    finally:
        engine.dispose()


def merged_rule_drops(summary: dict) -> dict:
    expected: dict = {}
    for step, report in summary["steps"].items():
        for rule, tables in report.get("dropped_by_rule", {}).items():
            for table, n in tables.items():
                if n:
                    expected.setdefault((step, rule), {})[table] = n
    return expected


def test_run_record_holds_every_fact(audit_url, pipeline_reports, synth_delivery, synth_truth, tmp_path):
    summary, path = write_run(tmp_path, pipeline_reports, synth_delivery, run_id="manual__2026-02-03T04:00:00+00:00")
    assert summary["status"] == "success" and summary["truth_check"]["status"] == "match", summary.get("truth_check")
    with open_audit(audit_url) as audit:
        start(audit, summary)
        (running,) = audit.list_runs()
        assert running["status"] == "running" and running["finished_at"] is None and running["seconds"] is None
        audit.record_summary(summary, summary_path=path)
        rec = audit.run_record(summary["run_id"])

    # The run's facts.
    assert {k: rec[k] for k in ("region", "release", "run_id", "dag_id", "trigger", "run_type", "triggered_by",
                                "engine", "config_hash", "input_uri", "status", "summary_path", "published",
                                "published_manifest", "truth_check", "dry_run", "steps_selected")} == {
        "region": REGION, "release": RELEASE, "run_id": summary["run_id"], "dag_id": "snds_release__local",
        "trigger": "manual", "run_type": "manual", "triggered_by": "alice", "engine": "duckdb",
        "config_hash": "c" * 64, "input_uri": str(synth_delivery), "status": "success", "summary_path": path,
        "published": True, "published_manifest": pipeline_reports["publish"]["version"], "truth_check": "match",
        "dry_run": False, "steps_selected": sorted(pipeline_reports)}
    assert rec["code_version"] == summary["code_version"]  # the summary's (it is the later fact)
    assert rec["started_at"] == T0.isoformat() and rec["finished_at"] == summary["written_at"]
    assert rec["seconds"] == (dt.datetime.fromisoformat(summary["written_at"]) - T0).total_seconds()

    # Steps: status, timings and row counts as reported.
    assert [s["step"] for s in rec["steps"]] == list(pipeline_reports)  # in the order they started
    for s in rec["steps"]:
        report = summary["steps"][s["step"]]
        totals = report.get("totals", {})
        assert s["status"] == "success" and s["engine"] == "duckdb" and s["error"] is None
        assert s["started_at"] == dt.datetime.fromisoformat(report["started_at"]).isoformat()
        assert s["seconds"] == report["seconds"]
        for column in ("rows_read", "rows_written", "quarantined", "dropped_by_rule"):
            assert s[column] == totals.get(column), (s["step"], column)
        assert s["totals"] == (totals or None)
    assert rec["steps"][0]["rows_read"] == sum(f["rows"] for f in synth_truth["files"].values())

    # Inputs: every delivered file with its checksum and size, computed here from the file itself.
    delivered = {p.name: p for p in synth_delivery.glob("*.csv")}
    assert {i["file"] for i in rec["inputs"]} == set(delivered) == set(synth_truth["files"])
    for i in rec["inputs"]:
        content = delivered[i["file"]].read_bytes()
        assert i["sha256"] == hashlib.sha256(content).hexdigest() and i["bytes"] == len(content), i["file"]
        assert i["rows_read"] == synth_truth["files"][i["file"]]["rows"]
        assert i["table_name"] in summary["steps"]["ingest"]["tables"]
    assert {i["year"] for i in rec["inputs"]} >= {2016, 2017, 2018, None}

    # Attrition: rows dropped per step, rule and table as the reports say, and as the generator planted.
    got_rules: dict = {}
    for a in rec["attrition"]:
        assert a["rows"] > 0
        if a["kind"] == "rule":
            got_rules.setdefault((a["step"], a["reason"]), {})[a["table_name"]] = a["rows"]
    assert got_rules == merged_rule_drops(summary) and got_rules
    by_rule_table = {(rule, table): n for (_, rule), tables in got_rules.items() for table, n in tables.items()}
    for rule, tables in synth_truth["cleaning"].items():
        for table, n in tables.items():
            assert by_rule_table.get((rule, table), 0) == n, (rule, table)
    # ... and quarantined lines per table and reason, from the files' reasons (= the truth's, per file).
    got_q = {(a["table_name"], a["reason"]): a["rows"] for a in rec["attrition"] if a["kind"] == "quarantine"}
    want_q: dict = {}
    for table, t in summary["steps"]["ingest"]["tables"].items():
        for f in t["files"]:
            for reason, n in synth_truth["files"][f["file"]]["quarantine"].items():
                want_q[(table, reason)] = want_q.get((table, reason), 0) + n
    assert got_q == {k: n for k, n in want_q.items() if n} and got_q
    quarantine = summary["steps"]["ingest"]["quarantine"]
    assert sum(got_q.values()) == quarantine["rows"]
    assert {r: sum(n for (_, reason), n in got_q.items() if reason == r) for r in quarantine["by_reason"]} \
        == quarantine["by_reason"]

    # Checks: the gate report's, one row each.
    assert [(c["gate"], c["name"], c["kind"], c["table_name"], c["severity"], c["status"], c["observed"], c["total"],
             c["description"], c["message"]) for c in rec["checks"]] == sorted(
        ("gate_model", c["name"], c["kind"], c["table"], c["severity"], c["status"], c["observed"], c["total"],
         c["description"], c["message"]) for c in GATE_CHECKS)
    thresholds = {c["name"]: (c["threshold_kind"], c["threshold"]) for c in rec["checks"]}
    assert thresholds == {"patients_key_unique": ("threshold", 0.0), "diagnoses_code_null_rate": ("max_rate", 0.01),
                          "drift_rows": (None, None)}

    # The JSON view is the same record.
    assert json.loads(json.dumps(rec)) == rec


def test_recording_is_idempotent(audit_url, pipeline_reports, synth_delivery, tmp_path):
    summary, path = write_run(tmp_path, pipeline_reports, synth_delivery, run_id="r1")
    with open_audit(audit_url) as audit:
        start(audit, summary)
        audit.record_summary(summary, summary_path=path)
    first = all_rows(audit_url)
    assert all(first[t] for t in ("audit_runs", "audit_steps", "audit_inputs", "audit_attrition", "audit_checks"))
    with open_audit(audit_url) as audit:  # a second open: tables exist, version matches
        audit.record_summary(summary, summary_path=path)
    assert all_rows(audit_url) == first
    with open_audit(audit_url) as audit:  # a cleared run: prepare_run starts the record over, summarize ends it
        start(audit, summary)
        assert all_rows(audit_url)["audit_steps"] == []
        audit.record_summary(summary, summary_path=path)
    assert all_rows(audit_url) == first


def test_failed_run(audit_url, pipeline_reports, synth_delivery, tmp_path):
    """A blocking check failed: the gate fails, publish never runs; recorded without record_run_start."""
    failed_gate = {"status": "failed", "error": "GateFailed: quality gate model failed: 1 blocking check(s): "
                                                "patients_key_unique",
                   "checks": [{**GATE_CHECKS[0], "status": "fail", "observed": 3, "message": "3 of 300"}],
                   "totals": {"checks": 1, "passed": 0, "failed": 1, "warnings": 0, "skipped": 0}}
    steps = [s for s in pipeline_reports if s != "publish"]
    summary, path = write_run(tmp_path, pipeline_reports, synth_delivery, run_id="f1", only=steps,
                              override={"gate_model": failed_gate})
    assert summary["status"] == "failed"
    summary.pop("started_at")  # an older summary: the run's start is its first step's
    with open_audit(audit_url) as audit:
        audit.record_summary(summary, summary_path=path)
        rec = audit.run_record("f1", region=REGION, release=RELEASE)
        (listed,) = audit.list_runs(region=REGION)
    assert rec["status"] == listed["status"] == "failed"
    assert rec["published"] is False and rec["published_manifest"] is None
    assert rec["started_at"] == T0.isoformat() and rec["triggered_by"] == "alice"
    gate = next(s for s in rec["steps"] if s["step"] == "gate_model")
    assert gate["status"] == "failed" and gate["error"] == failed_gate["error"]
    assert gate["totals"] == failed_gate["totals"] and gate["rows_read"] is None
    assert [(c["name"], c["status"], c["observed"]) for c in rec["checks"]] == [("patients_key_unique", "fail", 3)]
    assert "publish" not in {s["step"] for s in rec["steps"]}


def test_dry_run(audit_url):
    """A dry run checks parameters and the delivery and runs no step: a record without children."""
    summary = {"region": REGION, "release": RELEASE, "run_id": "dry", "engine": "duckdb", "input": "/in",
               "code_version": "v", "written_at": (T0 + dt.timedelta(seconds=75)).isoformat(), "status": "dry_run",
               "steps": {}, "trigger": "manual", "steps_selected": ["ingest"], "dry_run": True,
               "started_at": T0.isoformat()}
    with open_audit(audit_url) as audit:
        audit.record_summary(summary)
        rec = audit.run_record("dry")
    assert (rec["status"], rec["dry_run"], rec["published"], rec["seconds"], rec["summary_path"]) == (
        "dry_run", True, False, 75.0, None)
    assert rec["steps"] == rec["inputs"] == rec["attrition"] == rec["checks"] == []
    assert audit_mod.format_record(rec).splitlines()[4].endswith("(1m15s)")


def test_list_runs_and_lookup(audit_url):
    runs = [("local", "2026-01", "a", 0), ("local", "2026-02", "b", 2), ("fr-paris", "2026-01", "a", 1),
            ("local", "2026-02", "c", 3)]
    with open_audit(audit_url) as audit:
        for region, release, run_id, hour in runs:
            audit.record_run_start(region=region, release=release, run_id=run_id, dag_id=f"snds_release__{region}",
                                   trigger="schedule", run_type="scheduled", triggered_by=None, engine="duckdb",
                                   code_version="v", config_hash="h", input_uri="/in",
                                   started_at=T0 + dt.timedelta(hours=hour))
        assert [(r["region"], r["run_id"]) for r in audit.list_runs()] == [
            ("local", "c"), ("local", "b"), ("fr-paris", "a"), ("local", "a")]
        assert [r["run_id"] for r in audit.list_runs(region="local", release="2026-02")] == ["c", "b"]
        assert [r["run_id"] for r in audit.list_runs(limit=1)] == ["c"]
        assert audit.list_runs()[0]["started_at"] == (T0 + dt.timedelta(hours=3)).isoformat()
        with pytest.raises(RunNotFound, match=r"run 'a' is ambiguous.*region fr-paris release 2026-01.*"
                                              r"region local release 2026-01"):
            audit.run_record("a")
        assert audit.run_record("a", region="fr-paris")["region"] == "fr-paris"
        with pytest.raises(RunNotFound, match="no run 'zz' region 'local'"):
            audit.run_record("zz", region="local")


def test_command(audit_url, pipeline_reports, synth_delivery, tmp_path, capsys, monkeypatch):
    # A publish report without `version` (the brief's format): the manifest it names is recorded.
    summary, path = write_run(tmp_path, pipeline_reports, synth_delivery, run_id="manual__cli",
                              override={"publish": {"version": None}})
    with open_audit(audit_url) as audit:
        start(audit, summary)
        audit.record_summary(summary, summary_path=path)

    assert main(["--url", audit_url, "list"]) == 0
    out = capsys.readouterr().out
    header, _, row = out.splitlines()
    assert header.split() == ["run", "id", "region", "release", "status", "trigger/user", "started", "duration", "code"]
    assert row.split()[:5] == ["manual__cli", REGION, RELEASE, "success", "manual/alice"]

    monkeypatch.setenv("SNDS_AUDIT_URL", audit_url)
    assert main(["show", "manual__cli", "--region", REGION]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Run manual__cli · region {REGION} · release {RELEASE} · SUCCESS")
    ingest_file = summary["steps"]["ingest"]["tables"]["ER_PRS_F"]["files"][0]
    assert f"{ingest_file['file']}" in out and ingest_file["sha256"] in out
    assert "dcir_regularisation" in out and "diagnoses_code_null_rate" in out and "max_rate 0.01" in out
    assert f"published: yes, manifest {pipeline_reports['publish']['manifest']}" in out

    assert main(["show", "manual__cli", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["run_id"] == "manual__cli"
    assert len(shown["inputs"]) == sum(len(t["files"]) for t in summary["steps"]["ingest"]["tables"].values())
    assert main(["list", "--json", "--release", "none"]) == 0
    assert json.loads(capsys.readouterr().out) == []

    assert main(["show", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no run 'nope'" in err and PG_PASSWORD not in err
    if "postgresql" in audit_url:
        assert "***" in err


def test_tables_on_the_server(audit_url, request):
    """The tables are really in the configured database (not a stray SQLite file), each keyed by run."""
    with open_audit(audit_url):
        pass
    engine = sa.create_engine(normalise_url(audit_url))
    try:
        inspector = sa.inspect(engine)
        names = set(inspector.get_table_names())
        assert names == {"audit_schema_version", "audit_runs", "audit_steps", "audit_inputs", "audit_attrition",
                         "audit_checks"}
        for table in names - {"audit_schema_version", "audit_runs"}:
            (fk,) = inspector.get_foreign_keys(table)
            assert fk["referred_table"] == "audit_runs" and fk["constrained_columns"] == ["region", "release", "run_id"]
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version FROM audit_schema_version")).scalars().all() == [SCHEMA_VERSION]
    finally:
        engine.dispose()
    if "postgresql" in audit_url:
        pg = request.getfixturevalue("postgres_server")
        db = normalise_url(audit_url).database
        assert ("audit_runs",) in pg.query("SELECT tablename FROM pg_tables WHERE tablename = 'audit_runs'", db=db)


def test_newer_schema_is_refused(audit_url):
    with open_audit(audit_url):
        pass
    engine = sa.create_engine(normalise_url(audit_url))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_schema_version SET version = :v"), {"v": SCHEMA_VERSION + 1})
    engine.dispose()
    with pytest.raises(AuditSchemaError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this code's "
                                               f"{SCHEMA_VERSION}") as raised:
        open_audit(audit_url)
    assert PG_PASSWORD not in str(raised.value)


def test_plain_path_and_airflow_uri(tmp_path):
    with open_audit(str(tmp_path / "deep" / "dir" / "audit.db")) as audit:
        assert audit.list_runs() == []
    assert (tmp_path / "deep" / "dir" / "audit.db").is_file()
    # Airflow's Connection.get_uri() spells PostgreSQL `postgres://`.
    url = normalise_url("postgres://u:secret@db.example:5432/audit?sslmode=require")
    assert url.drivername == "postgresql+psycopg2" and url.query == {"sslmode": "require"}
    assert "secret" not in url.render_as_string(hide_password=True)


def test_config_hash(tmp_path):
    a, b = tmp_path / "one" / "clean.yaml", tmp_path / "one" / "model.yaml"
    a.parent.mkdir()
    a.write_text("x: 1\n")
    b.write_text("y: 2\n")
    h = config_hash([a, b])
    assert len(h) == 64 and h == config_hash([b, a]) == config_hash([str(a), str(b)])
    moved = tmp_path / "elsewhere"  # the same files in another checkout
    moved.mkdir()
    (moved / "clean.yaml").write_text("x: 1\n")
    (moved / "model.yaml").write_text("y: 2\n")
    assert config_hash([moved / "clean.yaml", moved / "model.yaml"]) == h
    b.write_text("y: 3\n")
    assert config_hash([a, b]) != h
    b.write_text("y: 2\n")
    b.rename(tmp_path / "one" / "other.yaml")  # a renamed file is another configuration
    assert config_hash([a, tmp_path / "one" / "other.yaml"]) != h
