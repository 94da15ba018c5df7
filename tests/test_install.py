"""The locked environment: exactly one pyspark, 4.3, and the pinned stack."""

from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT


def test_pyspark_is_4_3_and_alone():
    import pyspark

    assert pyspark.__version__.startswith("4.3"), pyspark.__version__
    assert md.version("pyspark").startswith("4.3")
    # pyspark-client installs into the same pyspark/ directory and would overwrite 4.3's files.
    with pytest.raises(md.PackageNotFoundError):
        md.distribution("pyspark-client")


def test_spark_jars_match_the_python_side():
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    cores = sorted(p.name for p in jars.glob("spark-core_*.jar"))
    assert cores and all(re.search(r"-4\.3\.\d+\.jar$", name) for name in cores), cores


def test_installed_versions_are_the_locked_ones():
    locked = dict(
        line.split("==", 1)
        for line in (PROJECT_ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    )
    assert "pyspark-client" not in locked
    for name in ("apache-airflow", "apache-airflow-core", "pyspark", "duckdb", "sqlglot",
                 "apache-airflow-providers-apache-spark", "apache-airflow-providers-amazon",
                 "argon2-cffi", "cryptography", "sqlalchemy"):
        assert md.version(name) == locked[name].strip(), name
    assert locked["apache-airflow"].startswith("3.3")


def test_airflow_sdk_imports():
    from airflow.sdk import DAG, BaseOperator, Param, task  # noqa: F401
