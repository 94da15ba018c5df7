"""Run summary assembly and the truth check of synthetic deliveries."""

from __future__ import annotations

import json
from pathlib import Path

from spark_jobs.lakefs import write_json as write_json_atomic
from spark_jobs.report import assemble_summary, human_summary, truth_check


def _ingest_report(rows_read=10, reasons=None):
    reasons = reasons or {}
    q = sum(reasons.values())
    return {
        "step": "ingest", "status": "success", "seconds": 1.0,
        "tables": {"ER_PRS_F": {"path": "/x", "rows_read": rows_read, "rows": rows_read - q, "quarantined": q,
                                "files": [{"file": "ER_PRS_F.csv", "year": None, "rows_read": rows_read,
                                           "rows": rows_read - q, "quarantined": q, "quarantine_reasons": reasons}]}},
        "quarantine": {"rows": q, "by_reason": reasons, "by_table": {}},
        "totals": {"rows_read": rows_read, "rows_written": rows_read - q, "quarantined": q},
    }


def test_truth_check_match_and_mismatch():
    truth = {"files": {"ER_PRS_F.csv": {"table": "ER_PRS_F", "year": None, "rows": 10,
                                        "quarantine": {"wrong_column_count": 1}}}}
    ok = truth_check({"ingest": _ingest_report(10, {"wrong_column_count": 1})}, truth)
    assert ok["status"] == "match" and ok["differences"] == []
    bad = truth_check({"ingest": _ingest_report(10, {"bad_date:EXE_SOI_DTD": 1})}, truth)
    assert bad["status"] == "mismatch" and "ER_PRS_F.csv" in bad["differences"][0]
    truth["files"]["T_MCO19B.csv"] = {"table": "T_MCOaaB", "year": 2019, "rows": 1, "quarantine": {}}
    missing = truth_check({"ingest": _ingest_report(10, {"wrong_column_count": 1})}, truth)
    assert missing["differences"] == ["T_MCO19B.csv: in the truth, not ingested"]


def test_summary_fails_on_truth_mismatch(tmp_path):
    run_dir = tmp_path / "run"
    write_json_atomic(run_dir / "steps" / "ingest.json", _ingest_report(10, {}))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"files": {"ER_PRS_F.csv": {"rows": 11, "quarantine": {}}}}))
    path = assemble_summary(run_dir, region="local", release="r", run_id="x", engine="duckdb",
                            input_uri="/d", truth_manifest=manifest)
    summary = json.loads(Path(str(path)).read_text())
    assert summary["status"] == "failed" and summary["truth_check"]["status"] == "mismatch"
    assert "MISMATCH" in human_summary(summary)
    path = assemble_summary(run_dir, region="local", release="r", run_id="x", engine="duckdb", input_uri="/d")
    summary = json.loads(Path(str(path)).read_text())
    assert summary["status"] == "success" and "truth_check" not in summary
    assert list(summary)[:5] == ["summary_version", "region", "release", "run_id", "engine"]


def test_truth_check_compares_rows_dropped_by_the_rules_ingest_applies():
    report = _ingest_report(10, {})
    report["rules_applied"] = ["pmsi_placeholder_nir"]
    f = report["tables"]["ER_PRS_F"]["files"][0]
    truth = {"files": {"ER_PRS_F.csv": {"rows": 10, "quarantine": {},
                                        "cleaning": {"pmsi_placeholder_nir": 2, "mco_error_ghm": 1}}}}
    f["dropped_by_rule"] = {"pmsi_placeholder_nir": 2}
    assert truth_check({"ingest": report}, truth)["status"] == "match"  # later rules are not ingest's
    f["dropped_by_rule"] = {}
    bad = truth_check({"ingest": report}, truth)
    assert bad["status"] == "mismatch" and "dropped by rule {}" in bad["differences"][0]


def test_human_summary_names_failed_checks_and_warnings():
    gate = {"step": "gate_model", "status": "failed", "seconds": 1.0,
            "totals": {"checks": 3, "passed": 1, "failed": 1, "warnings": 1, "skipped": 0},
            "checks": [{"name": "icd10_format", "severity": "blocking", "status": "fail", "message": "3 of 540"},
                       {"name": "drift_from_previous_release", "severity": "warning", "status": "fail",
                        "message": "1 of 10 (first: consults (vs release 2024-05))"},
                       {"name": "patient_key_unique", "severity": "blocking", "status": "pass", "message": "0 of 300"}]}
    text = human_summary({"release": "2024-06", "region": "local", "engine": "duckdb", "run_id": "r",
                          "status": "failed", "steps": {"gate_model": gate}})
    assert "    FAILED: icd10_format: 3 of 540" in text
    assert "    warning: drift_from_previous_release: 1 of 10 (first: consults (vs release 2024-05))" in text
    assert "patient_key_unique" not in text
