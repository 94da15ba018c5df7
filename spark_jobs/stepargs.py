"""Command-line arguments shared by every step entry point.

The same arguments are given whether the step runs in an Airflow task on DuckDB, under
`spark-submit --master local[*]`, or on EMR: only the URIs and `--engine` change.
"""

from __future__ import annotations

import argparse
import logging
import sys

from spark_jobs.engines import ENGINES


def step_parser(step: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"spark_jobs.{step}", description=description)
    p.add_argument("--engine", choices=ENGINES, default="duckdb", help="SQL engine (default: duckdb)")
    p.add_argument("--release", required=True, help="data release id, e.g. 2024-06")
    p.add_argument("--run-id", required=True, help="run id (one per DAG run)")
    p.add_argument("--report", required=True, help="where to write this step's JSON report")
    p.add_argument("--duckdb-memory-limit", default=None, help="DuckDB memory_limit, e.g. 8GB")
    p.add_argument("--duckdb-threads", type=int, default=None, help="DuckDB threads")
    return p


def engine_settings(args: argparse.Namespace) -> dict:
    if args.engine == "duckdb":
        return {"memory_limit": args.duckdb_memory_limit, "threads": args.duckdb_threads}
    return {"app_name": f"snds-{args.release}-{args.run_id}"}


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
        force=True,
    )
    # py4j is chatty at INFO on every call.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    logging.getLogger("sqlglot").setLevel(logging.WARNING)
