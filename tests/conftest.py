"""Shared fixtures: one local SparkSession per test session, a small synthetic delivery, Airflow env.

Airflow reads its configuration at import, so its environment is set here, before any test module
imports it: a throw-away AIRFLOW_HOME with a SQLite database, the project's DAG folder, no examples.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="snds_test_airflow_")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(PROJECT_ROOT / "plugins")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.setdefault("AIRFLOW_CONN_SPARK_LOCAL", json.dumps({"conn_type": "spark", "host": "local[*]"}))
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
# Python workers (UDFs) run the test interpreter, which has the project's packages.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
for _var in ("SNDS_ENGINE", "SNDS_REGIONS_DIR", "SNDS_DEPLOYMENT", "SNDS_REGIONS"):
    os.environ.pop(_var, None)

# Servers started by the tests that need them (once per session, stopped at its end).
from pgserver import postgres_server  # noqa: E402,F401
from s3server import s3_env, s3_server  # noqa: E402,F401
from sparkcluster import spark_standalone  # noqa: E402,F401

SAMPLES = PROJECT_ROOT / "tests" / "data" / "snds_samples"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def spark():
    """The one local SparkSession of the test session (JVM start ~5 s, paid once)."""
    import logging

    from pyspark.sql import SparkSession

    # py4j logs at INFO from __del__ at interpreter exit, after pytest closed the streams.
    logging.getLogger("py4j").setLevel(logging.WARNING)

    from spark_jobs.spark_conf import SPARK_QUIET_CONF, SPARK_SQL_CONF

    builder = (
        SparkSession.builder.master("local[2]")
        .appName("snds-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "2g")
    )
    for key, value in {**SPARK_QUIET_CONF, **SPARK_SQL_CONF}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(params=["duckdb", "spark"])
def engine(request):
    """Each engine in turn, for rule tests that must hold on both."""
    from spark_jobs.engines import open_engine

    if request.param == "spark":
        eng = open_engine("spark", spark=request.getfixturevalue("spark"))
    else:
        eng = open_engine("duckdb")
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def synth_delivery(tmp_path_factory) -> Path:
    """A small synthetic delivery (300 beneficiaries, 2016-2018: includes pre-2018 FINESS duplicates)."""
    from snds_synth import generate

    out = tmp_path_factory.mktemp("delivery") / "d"
    generate(out, n=300, seed=7, years=(2016, 2018))
    return out


@pytest.fixture(scope="session")
def synth_pipeline(synth_delivery, tmp_path_factory) -> tuple[Path, dict]:
    """The synthetic delivery through ingest (its truth pseudonymised too), clean, merge and model on
    DuckDB, once per session: (directory holding the zones ingest/, quarantine/, truth/, clean/, merge/,
    model/; each step's report sections, status success). Shared: copy a zone before changing it."""
    from helpers import ingest_delivery, run_steps_after_ingest

    out = tmp_path_factory.mktemp("synth_pipeline")
    reports = {"ingest": {**ingest_delivery("duckdb", synth_delivery, out, truth=True), "status": "success"}}
    reports.update(run_steps_after_ingest("duckdb", out / "ingest", out))
    return out, reports


@pytest.fixture(scope="session")
def synth_truth(synth_delivery) -> dict:
    return json.loads((synth_delivery / "_truth" / "manifest.json").read_text())


@pytest.fixture
def sample_profile() -> str:
    """The delivery profile of the comma-separated 10-row HDH sample files."""
    return "hdh_sample"
