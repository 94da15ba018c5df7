"""Operators that run one pipeline step on the region's engine.

A step is the same entry point (`spark_jobs/<step>.py`) with the same arguments on every engine:
- DuckDB: `DuckDBStepOperator` runs `python -m spark_jobs.<step> --engine duckdb ...` in a
  subprocess of the task (its own memory, its log lines streamed into the task log; for a region on
  S3, the AWS connection's credentials, region and endpoint in its environment);
- Spark: the provider's `SparkSubmitOperator` (local[*], or a standalone master running the uploaded
  code bundle), after checking that the Spark connection exists and points to the region's master (a
  missing connection makes the provider fall back to YARN silently);
- EMR Serverless: `EmrServerlessStartJobOperator`; EMR on EC2: `EmrAddStepsOperator` + `EmrStepSensor`,
  both running the uploaded code bundle (spark_jobs.bundle).
The provider operators are built when the task runs (`ProviderStep`): importing them costs a second or
more (boto3, OpenLineage), which DAG parsing must not pay. `step_tasks` picks the operator(s) from the
region's engine. Every step task reports OpenLineage inputs and outputs (its location arguments).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook, BaseOperator, BaseSensorOperator

from snds_operators.regions import PROJECT_ROOT, Region
from spark_jobs.spark_conf import SPARK_QUIET_CONF, SPARK_SQL_CONF

try:  # Airflow 3.1+
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # pragma: no cover
    from airflow.exceptions import AirflowFailException

SPARK_JOBS_DIR = PROJECT_ROOT / "spark_jobs"
#: Step arguments naming what a step reads and what it writes (OpenLineage datasets).
LINEAGE_INPUTS, LINEAGE_OUTPUTS = ("--input", "--ingest", "--clean"), ("--output", "--quarantine")


def _dataset(location: str):
    from openlineage.client.event_v2 import Dataset

    from spark_jobs.uris import is_s3, normalize, split_s3

    if is_s3(location):
        bucket, key = split_s3(normalize(location))
        return Dataset(namespace=f"s3://{bucket}", name=key)
    return Dataset(namespace="file", name=normalize(location))


def step_lineage(application_args: list[str]):
    """OpenLineage inputs and outputs of a step run, from its (rendered) arguments."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    args = [str(a) for a in application_args]
    pairs = list(zip(args, args[1:]))
    return OperatorLineage(inputs=[_dataset(v) for k, v in pairs if k in LINEAGE_INPUTS],
                           outputs=[_dataset(v) for k, v in pairs if k in LINEAGE_OUTPUTS])


class DuckDBStepOperator(BaseOperator):
    """Run a step entry point on DuckDB in a subprocess; fail the task if the step fails."""

    template_fields = ("application_args",)
    ui_color = "#fff100"

    def __init__(self, *, step: str, application_args: list[str], env_vars: dict[str, str] | None = None,
                 aws_conn_id: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.step = step
        self.application_args = application_args
        self.env_vars = env_vars or {}
        self.aws_conn_id = aws_conn_id

    def aws_env(self) -> dict[str, str]:
        """The step's AWS environment from the region's AWS connection (what the AWS SDKs and pyarrow
        read): credentials, region and endpoint. Empty without a connection."""
        from spark_jobs.objectstore import aws_environment

        return aws_environment(self.aws_conn_id) if self.aws_conn_id else {}

    def build_command(self) -> list[str]:
        return [sys.executable, "-m", f"spark_jobs.{self.step}", *[str(a) for a in self.application_args]]

    def execute(self, context: Any) -> None:
        cmd = self.build_command()
        self.log.info("Running step %s on DuckDB: %s", self.step, " ".join(cmd))
        env = {**os.environ, **self.aws_env(), **self.env_vars}
        with subprocess.Popen(
            cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.log.info("%s", line.rstrip())
            code = proc.wait()
        if code != 0:
            # Deterministic failures (bad delivery, accounting) would fail again: no retry.
            raise AirflowFailException(f"step {self.step} failed on DuckDB (exit code {code}); see the log above")

    def get_openlineage_facets_on_complete(self, task_instance):
        return step_lineage(self.application_args)


def step_arguments(step_args: list[str], region: Region) -> list[str]:
    """The entry point's arguments: the job engine, the step's own, and the region's allowed roots
    (the job re-checks every location it is given against them)."""
    return ["--engine", region.job_engine, *step_args, *region.allowed_root_args()]


def spark_conf(region: Region) -> dict[str, str]:
    """--conf of every Spark step of the region: the steps' own SQL settings, then the region's."""
    return {**SPARK_SQL_CONF, **SPARK_QUIET_CONF, **{k: str(v) for k, v in (region.spark.get("conf") or {}).items()}}


def code_xcom(key: str) -> str:
    """The uploaded code bundle's `key` (uri, zip, steps/<step>.py), from the package_code task."""
    return "{{ ti.xcom_pull(task_ids='package_code')['" + key + "'] }}"


def _provider_class(dotted: str):
    """The provider operator or sensor class named "module.Class", imported when a task runs."""
    module, name = dotted.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


class ProviderStep(BaseOperator):
    """A provider operator (`provider`: "module.Class") with `provider_kwargs`, built and run when the
    task executes. `provider_kwargs` are templated like the provider's own fields; `step_args` (the
    entry point's arguments) give the OpenLineage datasets."""

    template_fields = ("provider_kwargs", "step_args")
    ui_color = "#e8f7e4"

    def __init__(self, *, provider: str, provider_kwargs: dict, step_args: list[str], **kwargs):
        super().__init__(**kwargs)
        self.provider = provider
        self.provider_kwargs = provider_kwargs
        self.step_args = step_args

    def provider_operator(self) -> BaseOperator:
        return _provider_class(self.provider)(task_id=self.task_id, **self.provider_kwargs)

    def execute(self, context: Any):
        return self.provider_operator().execute(context)

    def get_openlineage_facets_on_complete(self, task_instance):
        return step_lineage(self.step_args)


class SparkStepOperator(ProviderStep):
    """spark-submit of a step, refused without its connection or on another master than the region's."""

    def __init__(self, *, expected_master: str | None = None, **kwargs):
        super().__init__(provider="airflow.providers.apache.spark.operators.spark_submit.SparkSubmitOperator",
                         **kwargs)
        self.expected_master = expected_master

    def execute(self, context: Any):
        conn_id = self.provider_kwargs["conn_id"]
        try:
            conn = BaseHook.get_connection(conn_id)
        except Exception as exc:  # the SDK raises its own not-found type
            raise AirflowFailException(
                f"Spark connection {conn_id!r} is not defined; without it spark-submit would silently "
                f"target YARN. Define it, e.g. AIRFLOW_CONN_{conn_id.upper()}="
                '\'{"conn_type": "spark", "host": "local[*]"}\''
            ) from exc
        if self.expected_master and conn.host != self.expected_master:
            raise AirflowFailException(
                f"Spark connection {conn_id!r} points to master {conn.host!r}, "
                f"the region expects {self.expected_master!r}"
            )
        return super().execute(context)


class ProviderSensor(BaseSensorOperator):
    """A provider sensor built when the task runs (see ProviderStep); pokes through it."""

    template_fields = ("provider_kwargs",)

    def __init__(self, *, provider: str, provider_kwargs: dict, **kwargs):
        super().__init__(**kwargs)
        self.provider = provider
        self.provider_kwargs = provider_kwargs

    def poke(self, context: Any) -> bool:
        return _provider_class(self.provider)(task_id=self.task_id, **self.provider_kwargs).poke(context)


def step_tasks(*, task_id: str, step: str, region: Region, step_args: list[str],
               **kwargs) -> tuple[BaseOperator, BaseOperator]:
    """The task(s) that run `spark_jobs/<step>.py` with `step_args` on the region's engine: (first, last),
    the same task for every engine but `emr` (add the step, then wait for it)."""
    args = step_arguments(step_args, region)
    name = f"snds-{region.name}-{step}"
    engine = region.engine
    if engine == "duckdb":
        duck = []
        if region.duckdb.get("memory_limit"):
            duck += ["--duckdb-memory-limit", str(region.duckdb["memory_limit"])]
        if region.duckdb.get("threads"):
            duck += ["--duckdb-threads", str(region.duckdb["threads"])]
        op = DuckDBStepOperator(task_id=task_id, step=step, application_args=args + duck,
                                aws_conn_id=region.aws_conn_id if region.uses_aws else None, **kwargs)
        return op, op
    if engine in ("spark-local", "spark-standalone"):
        spark = region.spark
        spark_submit = Path(sys.executable).parent / "spark-submit"
        local = engine == "spark-local"
        cluster = {} if local else {k: spark[k] for k in ("executor_memory", "executor_cores", "total_executor_cores")
                                    if spark.get(k)}
        op = SparkStepOperator(
            task_id=task_id,
            expected_master=spark["master"],
            step_args=args,
            provider_kwargs=dict(
                # spark-local runs this checkout; a cluster runs the uploaded bundle (zip as --py-files).
                application=str(SPARK_JOBS_DIR / f"{step}.py") if local else code_xcom(f"steps/{step}.py"),
                py_files=None if local else code_xcom("zip"),
                application_args=args,
                conn_id=region.spark_conn_id,
                conf=spark_conf(region),
                driver_memory=spark.get("driver_memory"),
                name=name,
                spark_binary=str(spark_submit) if spark_submit.exists() else None,
                # The driver runs the task's own Python; so do the executors unless the region says otherwise.
                env_vars={"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
                          **{k: str(v) for k, v in (spark.get("env") or {}).items()}},
                **cluster,
            ),
            **kwargs,
        )
        return op, op
    submit = ["--py-files", code_xcom("zip")]
    for key, value in spark_conf(region).items():
        submit += ["--conf", f"{key}={value}"]
    for option, key in (("--driver-memory", "driver_memory"), ("--executor-memory", "executor_memory"),
                        ("--executor-cores", "executor_cores")):
        if region.spark.get(key):
            submit += [option, str(region.spark[key])]
    aws = {"aws_conn_id": region.aws_conn_id, "region_name": region.cloud_region}
    if engine == "emr-serverless":
        emr = region.emr_serverless
        op = ProviderStep(
            task_id=task_id,
            provider="airflow.providers.amazon.aws.operators.emr.EmrServerlessStartJobOperator",
            step_args=args,
            provider_kwargs=dict(
                application_id=emr["application_id"],
                execution_role_arn=emr["execution_role_arn"],
                job_driver={"sparkSubmit": {"entryPoint": code_xcom(f"steps/{step}.py"), "entryPointArguments": args,
                                            "sparkSubmitParameters": " ".join(submit)}},
                configuration_overrides={"monitoringConfiguration": {
                    "s3MonitoringConfiguration": {"logUri": emr["log_uri"]}}},
                name=name,
                wait_for_completion=True,
                **aws,
            ),
            **kwargs,
        )
        return op, op
    if engine == "emr":
        emr = region.emr
        add = ProviderStep(
            task_id=task_id,
            provider="airflow.providers.amazon.aws.operators.emr.EmrAddStepsOperator",
            step_args=args,
            provider_kwargs=dict(
                job_flow_id=emr["cluster_id"],
                steps=[{"Name": name, "ActionOnFailure": "CONTINUE",
                        "HadoopJarStep": {"Jar": "command-runner.jar",
                                          "Args": ["spark-submit", "--deploy-mode", "cluster", "--name", name, *submit,
                                                   code_xcom(f"steps/{step}.py"), *args]}}],
                execution_role_arn=emr.get("execution_role_arn"),
                wait_for_completion=False,
                **aws,
            ),
            **kwargs,
        )
        wait = ProviderSensor(
            task_id=f"{task_id}_wait",
            provider="airflow.providers.amazon.aws.sensors.emr.EmrStepSensor",
            provider_kwargs=dict(job_flow_id=emr["cluster_id"],
                                 step_id="{{ ti.xcom_pull(task_ids='" + task_id + "')[0] }}", **aws),
            mode="reschedule",
            poke_interval=60,
            # Skipped with its step (the step's own pre_execute hook); runs whenever the step ran.
            pre_execute=kwargs.get("pre_execute"),
            trigger_rule="none_failed",
        )
        add >> wait
        return add, wait
    raise ValueError(f"region {region.name}: unknown engine {engine!r}")
