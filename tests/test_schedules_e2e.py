"""A region's schedules end to end on this machine (fr-paris, local variant): the monthly run of a date
processes that month's release from the landing zone; the landing watch announces complete deliveries
(and only them) with an Asset event; backfills create one run per past month."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from conftest import PROJECT_ROOT
from helpers import write_test_region


def _env(tmp_path, regions):
    env = {k: v for k, v in os.environ.items()
           if k not in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__UNIT_TEST_MODE")}
    env.update(AIRFLOW_HOME=str(tmp_path / "airflow"), SNDS_REGIONS_DIR=str(regions))
    return env


def _airflow_env(tmp_path, regions):
    """The environment localrun gives Airflow commands, for this test's regions."""
    code = ("import json, sys; from snds_operators.localrun import local_env, ensure_airflow_db; "
            "env = local_env(); ensure_airflow_db(env); print(); print(json.dumps(env))")
    out = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path, regions), cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "SNDS_REGIONS": "fr-paris"}


@pytest.fixture
def landing(tmp_path, synth_delivery):
    """fr-paris's local variant under tmp_path, with the synthetic delivery landed as release 2026-01
    (complete, SHA256SUMS included) and an incomplete 2026-02 (no manifest yet)."""
    regions = write_test_region(tmp_path, name="fr-paris", overrides={"landing": {"quiet_seconds": 0}})
    shutil.copytree(synth_delivery, tmp_path / "landing" / "2026-01")
    incomplete = tmp_path / "landing" / "2026-02"
    shutil.copytree(synth_delivery, incomplete)
    (incomplete / "SHA256SUMS").unlink()
    return regions


def test_monthly_run_processes_the_month_release_from_the_landing_zone(tmp_path, landing, synth_truth):
    """`airflow dags test` at the instant the scheduler starts the January 2026 run (5 February 06:00,
    the end of its data interval, 5 January to 5 February): it processes release 2026-01 from
    landing/2026-01/ once the sensor finds it complete."""
    proc = subprocess.run(
        [sys.executable, "-m", "snds_operators.localrun", "run", "--region", "fr-paris",
         "--logical-date", "2026-02-05T06:00:00+00:00"],
        env=_env(tmp_path, landing), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "■ wait_for_delivery: success" in proc.stdout and "■ preflight: success" in proc.stdout
    summary = json.loads(open(proc.stdout.strip().splitlines()[-1]).read())
    assert (summary["release"], summary["trigger"], summary["region"]) == ("2026-01", "schedule", "fr-paris")
    assert summary["input"] == str(tmp_path / "landing" / "2026-01")
    assert summary["status"] == "success" and summary["truth_check"]["status"] == "match"
    assert summary["cloud_region"] == "eu-west-3" and summary["engine"] == "duckdb"
    # The claim on the release was released at the end.
    assert not (tmp_path / "lake" / "runs" / "release=2026-01" / "ACTIVE_RUN.json").exists()


def test_landing_watch_announces_only_complete_deliveries(tmp_path, landing):
    env = _airflow_env(tmp_path, landing)
    run = lambda: subprocess.run(["airflow", "dags", "test", "snds_landing_watch__fr-paris"], env=env,  # noqa: E731
                                 cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    proc = run()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "2026-01: complete" in out and "announcing" in out
    assert "2026-02: incomplete, not processed: no SHA256SUMS manifest yet" in out
    marker = json.loads((tmp_path / "lake" / "runs" / "release=2026-01" / "delivery.json").read_text())
    assert marker["release"] == "2026-01" and marker["status"] == "complete"
    assert not (tmp_path / "lake" / "runs" / "release=2026-02").exists()
    # The Asset event that starts snds_release__fr-paris for that release, with its location.
    db = sqlite3.connect(tmp_path / "airflow" / "airflow.db")
    events = db.execute("SELECT a.name, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id").fetchall()
    assert [(name, json.loads(extra)) for name, extra in events] == [
        ("snds_delivery__fr-paris", {"release": "2026-01", "input": marker["location"],
                                     "manifest_sha256": marker["manifest_sha256"]})]
    release_dag = db.execute("SELECT dag_id FROM dag_schedule_asset_reference r JOIN asset a ON a.id = r.asset_id "
                             "WHERE a.name = 'snds_delivery__fr-paris'").fetchall()
    assert release_dag == [("snds_release__fr-paris",)]
    # The next day: nothing new to announce.
    proc = run()
    assert "2026-01: complete, already announced" in proc.stdout + proc.stderr
    assert db.execute("SELECT count(*) FROM asset_event").fetchone() == (1,)


def test_backfill_creates_one_run_per_month(tmp_path, landing):
    env = _airflow_env(tmp_path, landing)
    out = subprocess.run(["airflow", "dags", "reserialize"], env=env, cwd=PROJECT_ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    proc = subprocess.run(
        ["airflow", "backfill", "create", "--dag-id", "snds_release__fr-paris", "--from-date", "2026-01-01",
         "--to-date", "2026-04-30", "--dry-run"],
        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    # One run per monthly interval (logical date: the interval's start, the 5th), each for its month's release.
    for date in ("2026-01-05", "2026-02-05", "2026-03-05"):
        assert date in out, out[-3000:]
