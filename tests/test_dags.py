"""DAG integrity and the commands the step operators build (no Spark, no DuckDB run here)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT


def _in_fresh_python(code: str, env: dict | None = None) -> dict:
    """Run `code` in a new interpreter (clean sys.modules) and return the JSON it prints last."""
    import os

    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, cwd=PROJECT_ROOT, env={**os.environ, **(env or {})}, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_dagbag_imports_without_errors():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    assert "snds_release__local" in bag.dags
    dag = bag.dags["snds_release__local"]
    upstream = {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks}
    assert upstream == {
        "prepare_run": [], "check_keys": ["prepare_run"], "ingest": ["check_keys"], "update_vault": ["ingest"],
        "clean_dcir": ["update_vault"], "clean_pmsi": ["update_vault"], "merge": ["clean_dcir", "clean_pmsi"],
        "model": ["merge"], "summarize": ["model", "prepare_run"]}
    assert set(dag.params.keys()) == {"release", "input"}
    rotation = bag.dags["snds_key_rotation__local"]
    assert [t.task_id for t in rotation.topological_sort()] == ["check_keys", "rotate_key", "check_rotated_keys"]


def test_dag_file_is_cheap_to_import():
    """No Spark, DuckDB or pandas at import, and the DAG file itself (Airflow already loaded, as in the
    DAG processor) imports in well under 2 s."""
    result = _in_fresh_python("""
        import json, sys, time
        import airflow.sdk, airflow.sdk.bases.operator  # what the DAG processor has loaded already
        t = time.perf_counter()
        import importlib.util
        spec = importlib.util.spec_from_file_location("snds_release", "dags/snds_release.py")
        mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
        seconds = time.perf_counter() - t
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("pyspark", "duckdb", "pandas", "pyarrow", "numpy"))
        print(json.dumps({"seconds": seconds, "heavy": heavy, "dags": sorted(k for k in vars(mod) if k.startswith("snds_"))}))
    """)
    assert result["heavy"] == []
    assert result["dags"] == ["snds_key_rotation__local", "snds_release__local"]
    assert result["seconds"] < 2.0, result


def test_dag_tasks_on_each_engine(monkeypatch):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    from snds_operators.factory import build_release_dag
    from snds_operators.operators import DuckDBStepOperator
    from snds_operators.regions import load_regions

    monkeypatch.setenv("SNDS_ENGINE", "duckdb")
    dag = build_release_dag(load_regions()["local"])
    assert isinstance(dag.get_task("ingest"), DuckDBStepOperator)
    monkeypatch.setenv("SNDS_ENGINE", "spark")
    dag = build_release_dag(load_regions()["local"])
    ingest = dag.get_task("ingest")
    assert isinstance(ingest, SparkSubmitOperator)
    assert ingest.application == str(PROJECT_ROOT / "spark_jobs" / "ingest.py")
    assert ingest.application_args[:2] == ["--engine", "spark"]


def test_duckdb_operator_builds_the_step_command():
    from snds_operators.operators import step_operator
    from snds_operators.regions import load_regions

    region = load_regions()["local"]
    op = step_operator(task_id="ingest", step="ingest", region=region, step_args=["--input", "/d", "--release", "r"])
    assert op.build_command() == [
        sys.executable, "-m", "spark_jobs.ingest", "--engine", "duckdb", "--input", "/d", "--release", "r",
        "--duckdb-memory-limit", "8GB", "--duckdb-threads", "2",
    ]


def test_spark_operator_builds_the_spark_submit_command(monkeypatch):
    """The exact spark-submit command line, built by the provider's hook from the explicit connection."""
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

    from snds_operators.operators import SPARK_SQL_CONF, step_operator
    from snds_operators.regions import load_regions

    monkeypatch.setenv("SNDS_ENGINE", "spark")
    region = load_regions()["local"]
    op = step_operator(task_id="ingest", step="ingest", region=region, step_args=["--input", "/d", "--release", "r"])
    hook = op._get_hook()
    cmd = hook._build_spark_submit_command(op.application)
    assert cmd[0] == str(Path(sys.executable).parent / "spark-submit")
    assert cmd[cmd.index("--master") + 1] == "local[*]"  # from AIRFLOW_CONN_SPARK_LOCAL, not YARN
    confs = {cmd[i + 1] for i, a in enumerate(cmd) if a == "--conf"}
    for key, value in SPARK_SQL_CONF.items():
        assert f"{key}={value}" in confs
    assert cmd[cmd.index("--name") + 1] == "snds-local-ingest"
    assert cmd[-6:] == [str(PROJECT_ROOT / "spark_jobs" / "ingest.py"), "--engine", "spark", "--input", "/d", "--release", "r"][-6:]
    assert isinstance(hook, SparkSubmitHook)


def test_missing_spark_connection_is_refused(monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from snds_operators.operators import CheckedSparkSubmitOperator

    monkeypatch.delenv("AIRFLOW_CONN_SPARK_NOWHERE", raising=False)
    op = CheckedSparkSubmitOperator(task_id="t", application="x.py", conn_id="spark_nowhere")
    with pytest.raises(AirflowFailException, match="silently target YARN"):
        op.execute({})
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_ELSEWHERE", json.dumps({"conn_type": "spark", "host": "yarn"}))
    op = CheckedSparkSubmitOperator(task_id="t", application="x.py", conn_id="spark_elsewhere",
                                    expected_master="local[*]")
    with pytest.raises(AirflowFailException, match="expects 'local\\[\\*\\]'"):
        op.execute({})


REGION = """\
region: eu
lake_root: /data/lake
engine: duckdb
ingest_config: config/ingest.yaml
pseudonymisation:
  vault_root: {vault}
  key_provider: {{type: local_file, path: {key}}}
"""


def test_region_config_errors(tmp_path):
    from snds_operators.regions import RegionConfigError, load_region

    bad = tmp_path / "eu.yaml"
    good = REGION.format(vault="/secure/vault", key="/secure/region.key")
    bad.write_text(good)
    region = load_region(bad)
    assert region.argon2 == {"time_cost": 2, "memory_cost_kib": 19456, "parallelism": 1}
    assert region.pseudonymisation_args()[:4] == ["--vault", "/secure/vault", "--key-file", "/secure/region.key"]
    bad.write_text(good + "colour: blue\n")
    with pytest.raises(RegionConfigError, match="eu.yaml: unknown key.*colour"):
        load_region(bad)
    bad.write_text(good.replace("region: eu", "region: us"))
    with pytest.raises(RegionConfigError, match="must match the file name"):
        load_region(bad)
    bad.write_text("region: eu\nengine: duckdb\n")
    with pytest.raises(RegionConfigError, match="missing key.*lake_root"):
        load_region(bad)
    # The vault and the key stay apart from the lake: refused when the DAGs are parsed.
    bad.write_text(REGION.format(vault="/data/lake/vault", key="/secure/region.key"))
    with pytest.raises(RegionConfigError, match="vault_root /data/lake/vault overlaps lake_root /data/lake"):
        load_region(bad)
    bad.write_text(REGION.format(vault="/data", key="/secure/region.key"))
    with pytest.raises(RegionConfigError, match="overlaps lake_root"):
        load_region(bad)
    bad.write_text(REGION.format(vault="/secure/vault", key="/data/lake/keys/region.key"))
    with pytest.raises(RegionConfigError, match="key_provider.path .* is inside the lake"):
        load_region(bad)
    bad.write_text(good.replace("type: local_file, path: /secure/region.key", "type: aws_kms, key_arn: k"))
    with pytest.raises(RegionConfigError, match=r"key_provider \(aws_kms\) needs .*region_name"):
        load_region(bad)
    bad.write_text(good + "  argon2: {time_cost: 0}\n")
    with pytest.raises(RegionConfigError, match="argon2: positive integers"):
        load_region(bad)


def test_step_tasks_chain_the_zones_of_a_release(monkeypatch):
    """Each step reads the zone the previous one wrote, for the same release and run, on either engine."""
    from snds_operators.factory import build_release_dag
    from snds_operators.regions import load_regions

    for engine in ("duckdb", "spark"):
        monkeypatch.setenv("SNDS_ENGINE", engine)
        dag = build_release_dag(load_regions()["local"])
        args = {t: dict(zip(dag.get_task(t).application_args[::1], dag.get_task(t).application_args[1:]))
                for t in ("ingest", "clean_dcir", "clean_pmsi", "merge", "model")}
        x = lambda key: "{{ ti.xcom_pull(task_ids='prepare_run')['" + key + "'] }}"  # noqa: E731
        assert args["ingest"]["--output"] == x("ingest")
        assert (args["clean_dcir"]["--source"], args["clean_dcir"]["--input"], args["clean_dcir"]["--output"]) == (
            "dcir", x("ingest"), x("clean") + "/dcir")
        assert (args["clean_pmsi"]["--source"], args["clean_pmsi"]["--output"]) == ("pmsi", x("clean") + "/pmsi")
        assert (args["merge"]["--input"], args["merge"]["--output"]) == (x("clean"), x("merge"))
        assert (args["model"]["--input"], args["model"]["--ingest"], args["model"]["--output"]) == (
            x("merge"), x("ingest"), x("model"))
        for task in args:
            assert args[task]["--engine"] == engine and args[task]["--release"] == x("release")
            assert args[task]["--report"] == x(f"{task}_report")
        if engine == "spark":
            assert dag.get_task("merge").application == str(PROJECT_ROOT / "spark_jobs" / "merge.py")
        else:
            assert dag.get_task("clean_pmsi").build_command()[:3] == [sys.executable, "-m", "spark_jobs.clean"]


def test_run_paths_put_each_zone_under_the_release():
    from snds_operators.factory import STEPS, run_paths

    paths = run_paths(Path("/lake"), "2024-06", "manual__2024-07-01T00:00:00+00:00")
    for zone in ("ingest", "quarantine", "clean", "merge", "model"):
        assert paths[zone] == f"/lake/{zone}/release=2024-06"
    run_dir = "/lake/runs/release=2024-06/manual__2024-07-01T00_00_00_00_00"
    assert paths["run_dir"] == run_dir
    assert {paths[f"{s}_report"] for s in STEPS} == {f"{run_dir}/steps/{s}.json" for s in STEPS}
