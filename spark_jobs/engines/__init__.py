"""Engine adapters. `open_engine("duckdb")` or `open_engine("spark")`; the engine modules are imported
lazily so that importing this package (e.g. from a DAG file) costs nothing."""

from __future__ import annotations

from .base import Engine, replace_directory

ENGINES = ("duckdb", "spark")


def open_engine(name: str, **settings) -> Engine:
    if name == "duckdb":
        from .duckdb_engine import DuckDBEngine

        return DuckDBEngine(**settings)
    if name == "spark":
        from .spark_engine import SparkEngine

        return SparkEngine(**settings)
    raise ValueError(f"unknown engine {name!r}: expected one of {', '.join(ENGINES)}")


__all__ = ["Engine", "ENGINES", "open_engine", "replace_directory"]
