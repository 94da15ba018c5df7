"""Operators that run one pipeline step on the region's engine.

A step is the same entry point (`spark_jobs/<step>.py`) with the same arguments on every engine:
- DuckDB: `DuckDBStepOperator` runs `python -m spark_jobs.<step> --engine duckdb ...` in a
  subprocess of the task (its own memory, its log lines streamed into the task log);
- Spark: `CheckedSparkSubmitOperator` submits `spark_jobs/<step>.py --engine spark ...` through
  spark-submit, after checking that the Spark connection really exists (a missing connection makes
  the Spark provider fall back to YARN silently).
`step_operator` picks one from the region's engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import BaseHook, BaseOperator

from snds_operators.regions import PROJECT_ROOT, Region
from spark_jobs.spark_conf import SPARK_QUIET_CONF, SPARK_SQL_CONF

try:  # Airflow 3.1+
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # pragma: no cover
    from airflow.exceptions import AirflowFailException

SPARK_JOBS_DIR = PROJECT_ROOT / "spark_jobs"

class DuckDBStepOperator(BaseOperator):
    """Run a step entry point on DuckDB in a subprocess; fail the task if the step fails."""

    template_fields = ("application_args",)
    ui_color = "#fff100"

    def __init__(self, *, step: str, application_args: list[str], env_vars: dict[str, str] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.step = step
        self.application_args = application_args
        self.env_vars = env_vars or {}

    def build_command(self) -> list[str]:
        return [sys.executable, "-m", f"spark_jobs.{self.step}", *[str(a) for a in self.application_args]]

    def execute(self, context: Any) -> None:
        cmd = self.build_command()
        self.log.info("Running step %s on DuckDB: %s", self.step, " ".join(cmd))
        env = {**os.environ, **self.env_vars}
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


class CheckedSparkSubmitOperator(SparkSubmitOperator):
    """SparkSubmitOperator that refuses to run without its connection, or on an unexpected master."""

    def __init__(self, *, expected_master: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.expected_master = expected_master

    def execute(self, context: Any) -> None:
        try:
            conn = BaseHook.get_connection(self._conn_id)
        except Exception as exc:  # the SDK raises its own not-found type
            raise AirflowFailException(
                f"Spark connection {self._conn_id!r} is not defined; without it spark-submit would silently "
                f"target YARN. Define it, e.g. AIRFLOW_CONN_{self._conn_id.upper()}="
                '\'{"conn_type": "spark", "host": "local[*]"}\''
            ) from exc
        if self.expected_master and conn.host != self.expected_master:
            raise AirflowFailException(
                f"Spark connection {self._conn_id!r} points to master {conn.host!r}, "
                f"the region expects {self.expected_master!r}"
            )
        super().execute(context)


def step_arguments(step_args: list[str], engine: str) -> list[str]:
    return ["--engine", engine, *step_args]


def step_operator(*, task_id: str, step: str, region: Region, step_args: list[str], **kwargs) -> BaseOperator:
    """The operator that runs `spark_jobs/<step>.py` with `step_args` on the region's engine."""
    if region.engine == "duckdb":
        duck = []
        if region.duckdb.get("memory_limit"):
            duck += ["--duckdb-memory-limit", str(region.duckdb["memory_limit"])]
        if region.duckdb.get("threads"):
            duck += ["--duckdb-threads", str(region.duckdb["threads"])]
        return DuckDBStepOperator(
            task_id=task_id, step=step, application_args=step_arguments(step_args + duck, "duckdb"), **kwargs
        )
    spark = region.spark
    spark_submit = Path(sys.executable).parent / "spark-submit"
    conf = {
        **SPARK_SQL_CONF,
        **SPARK_QUIET_CONF,
        **{k: str(v) for k, v in (spark.get("conf") or {}).items()},
    }
    return CheckedSparkSubmitOperator(
        task_id=task_id,
        application=str(SPARK_JOBS_DIR / f"{step}.py"),
        application_args=step_arguments(step_args, "spark"),
        conn_id=spark["conn_id"],
        expected_master=spark.get("expected_master"),
        conf=conf,
        driver_memory=spark.get("driver_memory"),
        name=f"snds-{region.name}-{step}",
        spark_binary=str(spark_submit) if spark_submit.exists() else None,
        # The driver and executors run the project's own Python (same packages as the task).
        env_vars={"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
                  **{k: str(v) for k, v in (spark.get("env") or {}).items()}},
        **kwargs,
    )
