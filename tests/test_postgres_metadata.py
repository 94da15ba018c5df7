"""Airflow's metadata database on a real PostgreSQL server (Debian's package, started by the
`postgres_server` fixture on a free local port): `airflow db migrate` creates Airflow's tables there,
and the release DAG runs end to end with its DAG run and task instances recorded in PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT
from helpers import write_test_region

pytestmark = pytest.mark.airflow

DAG_ID = "snds_release__local"
VENV_BIN = Path(sys.executable).parent


def _airflow_env(tmp_path: Path, sql_alchemy_conn: str) -> dict[str, str]:
    """The test session's environment with a fresh AIRFLOW_HOME and the PostgreSQL metadata DB."""
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__CORE__UNIT_TEST_MODE"}
    env.update(
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sql_alchemy_conn,
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(PROJECT_ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(PROJECT_ROOT / "plugins"),
        PATH=str(VENV_BIN) + os.pathsep + os.environ.get("PATH", ""),
    )
    return env


def test_airflow_metadata_db_on_postgres(postgres_server, synth_delivery, tmp_path):
    pg = postgres_server
    env = _airflow_env(tmp_path, pg.url("airflow", "airflow", "airflow"))
    home = Path(env["AIRFLOW_HOME"])

    # 1. airflow db migrate creates Airflow's schema in PostgreSQL (not in a SQLite file).
    proc = subprocess.run([str(VENV_BIN / "airflow"), "db", "migrate"], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    tables = {t for (t,) in pg.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_catalog = %s",
        ("airflow",), db="airflow", user="airflow")}
    assert {"dag_run", "task_instance", "alembic_version", "dag", "xcom", "serialized_dag"} <= tables, sorted(tables)
    ((revision,),) = pg.query("SELECT version_num FROM alembic_version", db="airflow")
    assert revision
    owners = {o for (o,) in pg.query("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'", db="airflow")}
    assert owners == {"airflow"}
    assert not (home / "airflow.db").exists()

    # 2. The release DAG end to end (localrun: airflow dags test) on that metadata database.
    #    localrun.ensure_airflow_db migrates again with a PostgreSQL URL (it only skips when the SQLite
    #    file exists): a no-op on an up-to-date schema.
    #    The region: config/regions/local.yaml moved under tmp_path (as test_release_dag_e2e does).
    env["SNDS_REGIONS_DIR"] = str(write_test_region(tmp_path, roots=(synth_delivery.parent,)))
    proc = subprocess.run(
        [sys.executable, "-m", "snds_operators.localrun", "run", "--input", str(synth_delivery),
         "--release", "pg-meta", "--region", "local", "--engine", "duckdb"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Creating the Airflow metadata database" in proc.stdout  # the second, no-op migrate ran
    assert pg.query("SELECT version_num FROM alembic_version", db="airflow") == [(revision,)]
    assert not (home / "airflow.db").exists()

    summary_path = proc.stdout.strip().splitlines()[-1]
    assert summary_path.endswith("summary.json") and os.path.isfile(summary_path), proc.stdout[-2000:]
    summary = json.loads(Path(summary_path).read_text())
    assert summary["status"] == "success" and summary["release"] == "pg-meta" and summary["engine"] == "duckdb"

    # 3. The run and its task instances are in PostgreSQL, all successful.
    runs = pg.query("SELECT run_id, state FROM dag_run WHERE dag_id = %s", (DAG_ID,), db="airflow")
    assert runs == [(summary["run_id"], "success")], runs
    tis = dict(pg.query("SELECT task_id, state FROM task_instance WHERE dag_id = %s AND run_id = %s",
                        (DAG_ID, summary["run_id"]), db="airflow"))
    assert {"ingest", "check_keys", "update_vault", "clean_dcir", "clean_pmsi", "merge", "model"} <= set(tis), tis
    assert set(tis.values()) == {"success"}, tis
    for task_id in tis:
        assert f"■ {task_id}: success" in proc.stdout, task_id
    (serialized,) = pg.query("SELECT count(*) FROM serialized_dag WHERE dag_id = %s", (DAG_ID,), db="airflow")[0]
    assert serialized >= 1
