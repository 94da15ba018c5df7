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
    regions = ("local", "fr-paris", "eu-frankfurt", "us-east")
    assert set(bag.dags) == {f"snds_{kind}__{r}" for kind in ("release", "landing_watch", "key_rotation", "cohorts")
                             for r in regions}
    cohorts = bag.dags["snds_cohorts__local"]
    assert cohorts.task_ids == ["t2d_treated"] and set(cohorts.params.keys()) == {"release", "model_run_id"}
    dag = bag.dags["snds_release__local"]
    upstream = {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks}
    assert upstream == {
        "prepare_run": [], "preflight": ["prepare_run"], "wait_for_delivery": ["preflight", "prepare_run"],
        "check_keys": ["wait_for_delivery"], "ingest": ["check_keys"], "update_vault": ["ingest"],
        "clean_dcir": ["update_vault"], "clean_pmsi": ["update_vault"], "gate_clean": ["clean_dcir", "clean_pmsi"],
        "merge": ["gate_clean"], "model": ["merge"], "gate_model": ["model"], "feasibility_report": ["gate_model"],
        "publish": ["feasibility_report", "prepare_run"], "summarize": ["prepare_run", "publish"]}
    assert set(dag.params.keys()) == {"release", "input", "steps", "profile", "dry_run"}
    rotation = bag.dags["snds_key_rotation__local"]
    assert [t.task_id for t in rotation.topological_sort()] == ["check_keys", "rotate_key", "check_rotated_keys"]
    watch = bag.dags["snds_landing_watch__fr-paris"]
    assert [t.task_id for t in watch.topological_sort()] == ["scan_landing", "announce_delivery"]
    # The cluster engines run the uploaded code bundle: packaged after the key check, before ingest.
    us = bag.dags["snds_release__us-east"]
    assert us.get_task("package_code").upstream_task_ids == {"check_keys"}
    assert us.get_task("ingest").upstream_task_ids == {"package_code"}


IMPORT_CHECK = """
    import json, sys, time
    sys.path.insert(0, "plugins")
    # What the DAG processor has loaded already when it parses a file.
    import airflow.sdk, airflow.sdk.bases.operator, airflow.dag_processing.processor
    t = time.perf_counter()
    import importlib.util
    spec = importlib.util.spec_from_file_location("snds_release", "dags/snds_release.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    seconds = time.perf_counter() - t
    heavy = sorted(m for m in sys.modules
                   if m.split(".")[0] in ("pyspark", "duckdb", "pandas", "pyarrow", "numpy", "boto3", "botocore")
                   or m.startswith(("airflow.providers.apache.spark.operators", "airflow.providers.apache.spark.hooks",
                                    "airflow.providers.amazon.aws.operators", "airflow.providers.amazon.aws.hooks",
                                    "airflow.providers.amazon.aws.sensors")))
    print(json.dumps({"seconds": seconds, "heavy": heavy, "dags": sorted(k for k in vars(mod) if k.startswith("snds_"))}))
"""


@pytest.mark.parametrize("deployment, regions, expected", [
    ("local", "", 16),
    ("production", "fr-paris", 4),
    ("production", "eu-frankfurt", 4),
    ("production", "us-east", 4),
])
def test_dag_file_is_cheap_to_import(deployment, regions, expected):
    """No Spark, DuckDB, pandas, boto3 or provider operator at import (they load when a task runs), and
    the DAG file itself imports in well under 2 s, in every deployment."""
    result = _in_fresh_python(IMPORT_CHECK, env={"SNDS_DEPLOYMENT": deployment, "SNDS_REGIONS": regions})
    assert result["heavy"] == []
    assert len(result["dags"]) == expected
    if regions:
        assert all(d.endswith("__" + regions) for d in result["dags"])
    assert result["seconds"] < 2.0, result


def _regions(deployment: str, directory: Path | None = None):
    from snds_operators.regions import load_regions

    return load_regions(directory, deployment_name=deployment)


def _dag(region, monkeypatch=None):
    from snds_operators.factory import build_release_dag

    return build_release_dag(region)


X = lambda key: "{{ ti.xcom_pull(task_ids='prepare_run')['" + key + "'] }}"  # noqa: E731
CODE = lambda key: "{{ ti.xcom_pull(task_ids='package_code')['" + key + "'] }}"  # noqa: E731
INGEST_ARGS = ["--input", X("input"), "--output", X("ingest"), "--quarantine", X("quarantine"),
               "--truth", X("truth"), "--report", X("ingest_report"), "--profile", X("profile"), "--release", X("release"), "--run-id", X("run_id"),
               "--config", "config/ingest.yaml"]


def test_duckdb_engine_builds_the_step_command():
    region = _regions("local")["local"]
    op = _dag(region).get_task("ingest")
    assert op.build_command() == [
        sys.executable, "-m", "spark_jobs.ingest", "--engine", "duckdb", *INGEST_ARGS,
        *region.pseudonymisation_args(),
        *[a for root in region.allowed_roots for a in ("--allowed-root", root)],
        "--duckdb-memory-limit", "8GB", "--duckdb-threads", "2",
    ]


def test_spark_local_engine_builds_the_spark_submit_command(monkeypatch):
    """The exact spark-submit command line, built by the provider's hook from the explicit connection
    (eu-frankfurt's local variant runs on spark-local)."""
    from snds_operators.operators import SPARK_SQL_CONF

    region = _regions("local")["eu-frankfurt"]
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_EU_FRANKFURT_LOCAL", json.dumps({"conn_type": "spark", "host": "local[*]"}))
    op = _dag(region).get_task("merge")
    provider = op.provider_operator()
    cmd = provider._get_hook()._build_spark_submit_command(provider.application)
    assert cmd[0] == str(Path(sys.executable).parent / "spark-submit")
    assert cmd[cmd.index("--master") + 1] == "local[*]"  # from the connection, not YARN
    confs = {cmd[i + 1] for i, a in enumerate(cmd) if a == "--conf"}
    assert {f"{k}={v}" for k, v in SPARK_SQL_CONF.items()} | {"spark.sql.shuffle.partitions=8"} <= confs
    assert cmd[cmd.index("--name") + 1] == "snds-eu-frankfurt-merge"
    assert "--py-files" not in cmd  # this checkout's code
    app = cmd.index(str(PROJECT_ROOT / "spark_jobs" / "merge.py"))
    assert cmd[app + 1:] == [
        "--engine", "spark", "--input", X("clean"), "--output", X("merge"), "--report", X("merge_report"),
        "--release", X("release"), "--run-id", X("run_id"), "--config", "config/ingest.yaml",
        "--allowed-root", str(PROJECT_ROOT / "var" / "regions" / "eu-frankfurt")]


def test_spark_standalone_engine_builds_the_spark_submit_command(monkeypatch):
    """us-east in production: spark-submit to its standalone master, code from the uploaded bundle."""
    region = _regions("production")["us-east"]
    master = "spark://spark-master.us-east.snds.internal:7077"
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_US_EAST", json.dumps({"conn_type": "spark", "host": master}))
    op = _dag(region).get_task("model")
    assert op.expected_master == master
    provider = op.provider_operator()
    cmd = provider._get_hook()._build_spark_submit_command(provider.application)
    assert cmd[cmd.index("--master") + 1] == master
    assert cmd[cmd.index("--py-files") + 1] == CODE("zip")
    assert cmd[cmd.index("--executor-memory") + 1] == "8g"
    assert cmd[cmd.index("--executor-cores") + 1] == "4"
    app = cmd.index(CODE("steps/model.py"))
    assert cmd[app + 1:] == [
        "--engine", "spark", "--input", X("merge"), "--ingest", X("ingest"), "--clean", X("clean"), "--output", X("model"),
        "--report", X("model_report"), "--release", X("release"), "--run-id", X("run_id"),
        "--config", "config/ingest.yaml", "--allowed-root", "s3://snds-us-east-code",
        "--allowed-root", "s3://snds-us-east-lake", "--allowed-root", "s3://snds-us-east-landing",
        "--allowed-root", "s3://snds-us-east-vault"]


SUBMIT_PARAMS = ("--conf spark.sql.ansi.enabled=false --conf spark.sql.session.timeZone=UTC "
                 "--conf spark.sql.parquet.compression.codec=zstd --conf spark.sql.parquet.outputTimestampType=TIMESTAMP_MICROS "
                 "--conf spark.sql.sources.partitionColumnTypeInference.enabled=false --conf spark.ui.enabled=false "
                 "--conf spark.ui.showConsoleProgress=false --conf spark.sql.shuffle.partitions=64 "
                 "--driver-memory 4g --executor-memory 8g --executor-cores 4")


def test_emr_serverless_engine_builds_the_job_driver():
    """fr-paris in production: EmrServerlessStartJobOperator with the bundle's entry point, the same
    arguments as every engine, the region's application, role, logs and AWS connection."""
    from airflow.providers.amazon.aws.operators.emr import EmrServerlessStartJobOperator

    region = _regions("production")["fr-paris"]
    task = _dag(region).get_task("ingest")
    op = task.provider_operator()
    assert isinstance(op, EmrServerlessStartJobOperator)
    roots = ["--allowed-root", "s3://snds-fr-paris-code", "--allowed-root", "s3://snds-fr-paris-lake",
             "--allowed-root", "s3://snds-fr-paris-landing", "--allowed-root", "s3://snds-fr-paris-vault"]
    kms = "arn:aws:kms:eu-west-3:111111111111:key/5e1d0c4a-0000-4000-8000-000000001111"
    assert op.job_driver == {"sparkSubmit": {
        "entryPoint": CODE("steps/ingest.py"),
        "entryPointArguments": ["--engine", "spark", *INGEST_ARGS, "--vault", "s3://snds-fr-paris-vault/vault",
                                "--kms-key-arn", kms, "--kms-region", "eu-west-3", "--argon2-time-cost", "2",
                                "--argon2-memory-kib", "19456", "--argon2-parallelism", "1", *roots],
        "sparkSubmitParameters": f"--py-files {CODE('zip')} {SUBMIT_PARAMS}"}}
    assert op.application_id == "00fr7parisapp01"
    assert op.execution_role_arn == "arn:aws:iam::111111111111:role/snds-fr-paris-emr-job"
    assert op.configuration_overrides == {"monitoringConfiguration": {"s3MonitoringConfiguration": {
        "logUri": "s3://snds-fr-paris-code/emr-logs"}}}
    assert (op.aws_conn_id, op.region_name, op.wait_for_completion) == ("aws_fr_paris", "eu-west-3", True)
    assert op.name == "snds-fr-paris-ingest"


def test_emr_engine_builds_the_step_definition_and_its_sensor():
    from airflow.providers.amazon.aws.operators.emr import EmrAddStepsOperator
    from airflow.providers.amazon.aws.sensors.emr import EmrStepSensor

    region = _regions("production")["eu-frankfurt"]
    dag = _dag(region)
    add, wait = dag.get_task("clean_pmsi"), dag.get_task("clean_pmsi_wait")
    op = add.provider_operator()
    assert isinstance(op, EmrAddStepsOperator)
    roots = ["--allowed-root", "s3://snds-eu-frankfurt-code", "--allowed-root", "s3://snds-eu-frankfurt-lake",
             "--allowed-root", "s3://snds-eu-frankfurt-landing", "--allowed-root", "s3://snds-eu-frankfurt-vault"]
    assert op.steps == [{"Name": "snds-eu-frankfurt-clean", "ActionOnFailure": "CONTINUE", "HadoopJarStep": {
        "Jar": "command-runner.jar",
        "Args": ["spark-submit", "--deploy-mode", "cluster", "--name", "snds-eu-frankfurt-clean",
                 "--py-files", CODE("zip"), *SUBMIT_PARAMS.split(" "), CODE("steps/clean.py"),
                 "--engine", "spark", "--source", "pmsi", "--input", X("ingest"), "--output", X("clean") + "/pmsi",
                 "--report", X("clean_pmsi_report"), "--release", X("release"), "--run-id", X("run_id"),
                 "--config", "config/ingest.yaml", *roots]}}]
    assert (op.job_flow_id, op.aws_conn_id, op.region_name) == ("j-2AXXXXXXGAPLF", "aws_eu_frankfurt", "eu-central-1")
    assert op.execution_role_arn == "arn:aws:iam::222222222222:role/snds-eu-frankfurt-emr-step"
    sensor = wait.provider_kwargs
    assert wait.upstream_task_ids == {"clean_pmsi"} and dag.get_task("gate_clean").upstream_task_ids == {
        "clean_dcir_wait", "clean_pmsi_wait"}
    assert dag.get_task("merge").upstream_task_ids == {"gate_clean_wait"}
    assert sensor == {"job_flow_id": "j-2AXXXXXXGAPLF", "step_id": "{{ ti.xcom_pull(task_ids='clean_pmsi')[0] }}",
                      "aws_conn_id": "aws_eu_frankfurt", "region_name": "eu-central-1"}
    assert isinstance(EmrStepSensor(task_id="w", **sensor), EmrStepSensor)
    assert wait.mode == "reschedule"


def test_missing_or_foreign_spark_connection_is_refused(monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from snds_operators.operators import SparkStepOperator

    monkeypatch.delenv("AIRFLOW_CONN_SPARK_NOWHERE", raising=False)
    op = SparkStepOperator(task_id="t", step_args=[], provider_kwargs={"application": "x.py", "conn_id": "spark_nowhere"})
    with pytest.raises(AirflowFailException, match="silently target YARN"):
        op.execute({})
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_ELSEWHERE", json.dumps({"conn_type": "spark", "host": "yarn"}))
    op = SparkStepOperator(task_id="t", step_args=[], expected_master="local[*]",
                           provider_kwargs={"application": "x.py", "conn_id": "spark_elsewhere"})
    with pytest.raises(AirflowFailException, match="expects 'local\\[\\*\\]'"):
        op.execute({})


@pytest.mark.parametrize("deployment", ["local", "production"])
def test_every_dag_references_only_its_own_region(deployment):
    """Each generated DAG's tasks name only their own region's storage, connections, keys and clusters:
    no other region's bucket, directory, connection, KMS key, EMR application or cluster appears anywhere
    in a task's arguments, and every literal location is inside the region's allowed roots."""
    from snds_operators.factory import build_dags
    from snds_operators.regions import _resources
    from snds_operators.releases import task_locations

    import os
    os.environ["SNDS_DEPLOYMENT"] = deployment
    try:
        regions = _regions(deployment)
        dags = build_dags()
    finally:
        del os.environ["SNDS_DEPLOYMENT"]
    assert {d.split("__")[1] for d in dags} == set(regions)
    for dag_id, dag in dags.items():
        region = regions[dag_id.split("__")[1]]
        foreign = {key.split(":", 1)[1] if not key.startswith(("s3://", "/")) else key
                   for other in regions.values() if other.name != region.name for key in _resources(other)}
        for task in dag.tasks:
            text = json.dumps({k: v for k, v in vars(task).items() if not k.startswith("_")}, default=str)
            leaks = sorted(f for f in foreign if f in text)
            assert leaks == [], (dag_id, task.task_id, leaks)
            for field, uri in task_locations(task):
                region.check_location(uri, f"{dag_id}.{task.task_id}.{field}")
        for conn in {getattr(t, "provider_kwargs", {}).get("aws_conn_id") for t in dag.tasks} - {None}:
            assert conn == region.aws_conn_id


def _copy_regions(tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "regions"
    shutil.copytree(PROJECT_ROOT / "config" / "regions", target)
    return target


BOTH, PROD, LOCAL = ("production", "local"), ("production",), ("local",)
CROSS_WIRED = [
    # (file, text to replace (every occurrence), replacement, error, deployments where it applies)
    ("fr-paris", "vault_root: s3://snds-fr-paris-vault/vault", "vault_root: s3://snds-us-east-vault/vault",
     "pseudonymisation.vault_root 's3://snds-us-east-vault/vault' is outside the region's allowed storage", PROD),
    ("fr-paris", "snds-fr-paris-lake: eu-west-3", "snds-fr-paris-lake: us-east-1",
     "storage.buckets.snds-fr-paris-lake: in us-east-1, but region fr-paris is in eu-west-3", PROD),
    ("fr-paris", "snds-fr-paris-code: eu-west-3", "snds-fr-paris-code: eu-west-3\n    snds-us-east-lake: eu-west-3",
     "storage root s3://snds-us-east-lake belongs to region fr-paris (fr-paris.yaml)", PROD),
    ("eu-frankfurt", "key_arn: arn:aws:kms:eu-central-1:222222222222:key/5e1d0c4a-0000-4000-8000-000000002222",
     "key_arn: arn:aws:kms:us-east-1:333333333333:key/5e1d0c4a-0000-4000-8000-000000003333",
     "KMS key in us-east-1 (region_name eu-central-1), but region eu-frankfurt is in eu-central-1", PROD),
    ("us-east", "aws_us_east", "aws_fr_paris", "connections.aws 'aws_fr_paris' belongs to region fr-paris", BOTH),
    ("us-east", "spark_us_east_local", "spark_eu_frankfurt_local",
     "connections.spark 'spark_eu_frankfurt_local' belongs to region eu-frankfurt", LOCAL),
    ("eu-frankfurt", "log_uri: s3://snds-eu-frankfurt-code/emr-logs/", "log_uri: s3://snds-fr-paris-code/emr-logs/",
     "emr.log_uri 's3://snds-fr-paris-code/emr-logs' is outside the region's allowed storage", PROD),
    ("us-east", "landing_root: var/regions/us-east/landing", "landing_root: var/regions/fr-paris/landing",
     "storage.landing_root", LOCAL),
    ("us-east", "local_roots: [var/regions/us-east]", "local_roots: [var/regions/us-east, var/regions/fr-paris/lake]",
     "belongs to region", LOCAL),
    ("us-east", "region: us-east\n", "region: us-east\ncolour: blue\n", "us-east.yaml: colour: unknown key", BOTH),
    ("us-east", "  namespace: snds-us-east\n", "", "us-east.yaml: lineage: 'namespace' missing", BOTH),
    ("us-east", "  namespace: snds-us-east\n", "  namespace: snds-fr-paris\n",
     "lineage namespace snds-fr-paris belongs to region", BOTH),
    ("fr-paris", "engine: emr-serverless", "engine: emr", "emr: required when the engine is emr", PROD),
    ("us-east", "connection: audit_us_east", "connection: audit_eu_frankfurt",
     "audit.connection 'audit_eu_frankfurt' belongs to region eu-frankfurt", PROD),
    ("us-east", "path: var/regions/us-east/audit/audit.db", "path: var/regions/fr-paris/audit/audit.db",
     "audit.path", LOCAL),
    ("local", "path: var/audit/local/audit.db", "path: /tmp/elsewhere/audit.db",
     "audit.path '/tmp/elsewhere/audit.db' is outside the region's allowed storage", BOTH),
]


@pytest.mark.parametrize("deployment", ["production", "local"])
@pytest.mark.parametrize("name, old, new, error, deployments", CROSS_WIRED, ids=[c[3][:40] for c in CROSS_WIRED])
def test_cross_wired_region_is_refused_at_parse_time(tmp_path, deployment, name, old, new, error, deployments):
    """A region config that reaches into another region (or breaks the schema) is an import error of the
    DAG file, naming the file and the key. A setting of the other deployment is not used, so not checked."""
    from snds_operators.regions import RegionConfigError

    regions = _copy_regions(tmp_path)
    path = regions / f"{name}.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    if deployment not in deployments:
        _regions(deployment, regions)
        return
    with pytest.raises(RegionConfigError) as err:
        _regions(deployment, regions)
    assert error in str(err.value) and ".yaml: " in str(err.value), str(err.value)


def test_cross_wired_region_is_an_import_error_of_the_dag_file(tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    regions = _copy_regions(tmp_path)
    path = regions / "fr-paris.yaml"
    path.write_text(path.read_text().replace("lake_root: var/regions/fr-paris/lake", "lake_root: var/regions/us-east/lake"))
    monkeypatch.setenv("SNDS_REGIONS_DIR", str(regions))
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    (message,) = bag.import_errors.values()
    assert "fr-paris.yaml: storage.lake_root" in message and "outside the region's allowed storage" in message
    assert bag.dags == {}


def test_region_files_are_checked_against_the_schema(tmp_path):
    from snds_operators.regions import RegionConfigError, load_region

    regions = _copy_regions(tmp_path)
    path = regions / "local.yaml"
    good = path.read_text()
    region = load_region(path, "local")
    assert region.argon2 == {"time_cost": 2, "memory_cost_kib": 19456, "parallelism": 1}
    assert region.pseudonymisation_args()[:4] == ["--vault", str(PROJECT_ROOT / "var/vault/local"), "--key-file",
                                                  str(PROJECT_ROOT / "var/keys/local/region.key")]
    cases = [
        (good.replace("\nregion: local", "\nregion: us"), "must match the file name"),
        (good.replace("cloud_region: local\n", ""), "(top level): 'cloud_region' missing"),
        (good.replace("engine: duckdb ", "engine: hadoop "), "engine: 'hadoop' is not one of"),
        (good.replace("threads: 2", "threads: two"), "duckdb.threads: 'two' is not of type 'integer'"),
        (good.replace("vault_root: var/vault/local", "vault_root: var/lake/local/vault"),
         "vault_root /work" if False else "overlaps lake_root"),
        (good.replace("path: var/keys/local/region.key", "path: var/lake/local/region.key"), "is inside the lake"),
        (good.replace("    type: local_file ", "    type: aws_kms "), "pseudonymisation.key_provider: not a valid 'aws_kms' entry"),
        (good.replace("  argon2:", "  argon2:\n    rounds: 3"), "pseudonymisation.argon2.rounds: unknown key"),
        (good.replace("lake_root: var/lake/local ", "lake_root: s3://bucket/lake "), "is on S3 but the region is local"),
        (good.replace("  memory_limit: 8GB", "  memory_limit: 8GB\n  tmp: /x"), "duckdb.tmp: unknown key"),
    ]
    for text, error in cases:
        path.write_text(text)
        with pytest.raises(RegionConfigError) as err:
            load_region(path, "local")
        assert error in str(err.value) and "local.yaml" in str(err.value), (error, str(err.value))


def test_run_paths_put_each_zone_under_the_release():
    from snds_operators.factory import STEPS, run_paths

    from snds_operators.releases import FOLLOWS, expected_reports

    paths = run_paths("/lake", "2024-06", "manual__2024-07-01T00:00:00+00:00")
    for zone in ("ingest", "quarantine", "truth", "clean", "merge"):
        assert paths[zone] == f"/lake/{zone}/release=2024-06"
    # The model is the run's own (write-audit-publish): never replaced by another run.
    assert paths["model"] == "/lake/model/release=2024-06/run=manual__2024-07-01T00_00_00_00_00"
    run_dir = "/lake/runs/release=2024-06/manual__2024-07-01T00_00_00_00_00"
    assert paths["run_dir"] == run_dir and paths["feasibility_html"] == f"{run_dir}/feasibility.html"
    assert {paths[f"{s}_report"] for s in (*STEPS, *FOLLOWS)} == {f"{run_dir}/steps/{s}.json"
                                                                 for s in (*STEPS, *FOLLOWS)}
    assert expected_reports(["merge", "model"]) == ["merge", "model", "gate_model", "feasibility_report", "publish"]
    assert expected_reports(["ingest", "clean_pmsi"]) == ["ingest", "clean_pmsi", "gate_clean"]
    assert run_paths("s3://b/lake", "2024-06", "r")["model"] == "s3://b/lake/model/release=2024-06/run=r"


def test_trigger_form_params_are_validated():
    """The trigger form's Params: documented, with defaults for scheduled runs, and refusing a bad
    release id, an unknown step or an empty step list before any task runs."""
    import copy

    from airflow.sdk.definitions.param import ParamsDict

    try:
        from airflow.sdk.exceptions import ParamValidationError
    except ImportError:  # pragma: no cover
        from airflow.exceptions import ParamValidationError

    dag = _dag(_regions("local")["local"])
    assert all(dag.params.get_param(k).description for k in ("release", "input", "steps", "profile", "dry_run"))
    defaults = dag.params.validate()
    assert defaults == {"release": "", "input": "", "dry_run": False, "profile": "native",
                        "steps": ["ingest", "clean_dcir", "clean_pmsi", "merge", "model"]}
    # The form proposes the shipped profiles and auto.
    assert {"native", "cnam_study", "hdh_sample", "auto"} <= set(dag.params.get_param("profile").schema["examples"])
    ok = ParamsDict(copy.deepcopy(dag.params))
    ok.update({"release": "2024-06", "steps": ["merge", "model"], "dry_run": True, "profile": "auto"})
    assert ok.validate()["steps"] == ["merge", "model"]
    for bad in ({"release": "../2024"}, {"steps": ["publish"]}, {"steps": []}, {"dry_run": "yes"},
                {"steps": ["merge", "merge"]}, {"profile": ""}):
        params = ParamsDict(copy.deepcopy(dag.params))
        with pytest.raises(ParamValidationError):
            params.update(bad)  # a Param checks its value when set, as the form does on submit
            params.validate()
