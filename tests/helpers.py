"""Helpers shared by test modules (import as `from helpers import ...`)."""

from __future__ import annotations

from pathlib import Path

import duckdb


def ingest_delivery(engine_name: str, delivery: Path, out: Path, *, config: Path | None = None,
                    spark=None, run_id: str = "t") -> dict:
    """Run the ingest step's code on an engine; return its report sections."""
    from spark_jobs.delivery import IngestConfig
    from spark_jobs.engines import open_engine
    from spark_jobs.ingest import run_ingest

    cfg = IngestConfig.load(config)
    settings = {"spark": spark} if engine_name == "spark" else {}
    with open_engine(engine_name, **settings) as eng:
        return run_ingest(eng, delivery, out / "ingest", out / "quarantine", cfg, run_id)



def table_rows(directory: Path) -> list[tuple]:
    """All rows of a Parquet directory, as a sorted list (a multiset made comparable)."""
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT * FROM read_parquet('{directory}/**/*.parquet', hive_partitioning = false)"
    ).fetchall()
    return sorted(rows, key=repr)


def table_schema(directory: Path) -> list[tuple[str, str]]:
    con = duckdb.connect()
    return [
        (name, type_)
        for name, type_, *_ in con.execute(
            f"DESCRIBE SELECT * FROM read_parquet('{directory}/**/*.parquet', hive_partitioning = false)"
        ).fetchall()
    ]
