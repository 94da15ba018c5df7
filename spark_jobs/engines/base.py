"""What a step needs from an engine: read lines, run SQL into named views, write Parquet.

Steps are written against this small interface so that the same step code and the same SQL run on
DuckDB (embedded default) and on Spark (local[*], standalone or EMR). Everything that differs between
the two engines lives in the two adapters of this package and nowhere else (locations are local
paths or s3:// URIs, `lakefs.LakePath`):
- the SQL dialect (SQL is authored in DuckDB's dialect and transpiled by sqlglot for Spark),
- how a text file is read as raw lines (encoding, header skipping),
- how Parquet is written so that file names and row order are deterministic.
"""

from __future__ import annotations

import abc
import os
import shutil
from pathlib import Path

#: Dialect the SQL under sql/ is authored in.
AUTHORING_DIALECT = "duckdb"


class Engine(abc.ABC):
    """One SQL engine session for one step run."""

    name: str
    dialect: str

    def transpile(self, sql: str) -> str:
        """SQL authored in DuckDB's dialect, in this engine's dialect (engines of another dialect
        override this with sqlglot)."""
        return sql

    @abc.abstractmethod
    def read_lines(self, view: str, path: "LakePath", encoding: str, line_numbers: bool = True) -> None:
        """Register `view(line VARCHAR, _lineno BIGINT)`: the data lines of a text file, header line
        excluded. `_lineno` increases with the position in the file (not necessarily by one: Spark
        numbers each split on its own), so `ORDER BY _lineno` restores the file's order. Without
        `line_numbers` it is NULL, for readers that do not need it (cheaper on DuckDB)."""

    @abc.abstractmethod
    def register_rows(self, view: str, columns: list[str], rows: list[tuple]) -> None:
        """Register `view` over rows held in Python (every column VARCHAR)."""

    @abc.abstractmethod
    def register_pseudonymiser(self, pepper: bytes, params, workers: int) -> None:
        """Make the SQL function `snds_pseudonym(VARCHAR) -> VARCHAR` (argon2id, see vault.pseudonym)
        available, vectorised and parallel on this engine; `pseudonym_calls()` counts the values it
        hashed, so tests can check that each identifier is hashed once."""

    def spread(self, view: str) -> None:
        """Spread a materialised view's rows over every core before a costly per-row UDF runs on it.
        Nothing to do on DuckDB, whose UDF hashes each batch on its own threads."""

    @abc.abstractmethod
    def pseudonym_calls(self) -> int:
        """Values hashed by `snds_pseudonym` in this session so far."""

    @abc.abstractmethod
    def create_view(self, view: str, sql: str, materialize: bool = False, lookup: bool = False) -> None:
        """Register `view` as the result of `sql` (authoring dialect). `materialize` computes it once
        so that several outputs can be taken from it without recomputing. `lookup` says the view is
        a lookup table joined to big ones (Spark broadcasts it when it is small enough)."""

    @abc.abstractmethod
    def rows(self, sql: str) -> list[tuple]:
        """Run a query (authoring dialect) returning a small result."""

    @abc.abstractmethod
    def columns(self, view: str) -> list[str]:
        """The column names of a registered view, in order."""

    @abc.abstractmethod
    def write_parquet(self, sql: str, directory: "LakePath", order_by: str | None = None) -> None:
        """Write the result of `sql` (authoring dialect) as Parquet files in `directory` (created),
        named part-00000.parquet, part-00001.parquet, ... in a deterministic order. With `order_by`
        (one column, or several as "a, b"), `sql` also selects those columns: rows are written in
        their order and the columns are left out
        (a full sort on DuckDB; on Spark a hash partitioning on those columns and a sort within each
        partition, since a global sort's range boundaries come from a sample)."""

    @abc.abstractmethod
    def read_parquet(self, view: str, directory: "LakePath") -> None:
        """Register `view` over the Parquet files of `directory` (hive partitions become columns; files
        with different columns are read by name, a column missing from a file being NULL there)."""

    @abc.abstractmethod
    def drop_view(self, view: str) -> None:
        """Forget a view (and free its materialised data)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the session."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def replace_directory(staged: Path, final: Path) -> None:
    """Make `staged` visible as `final`, replacing any previous content, without a moment where a
    reader sees a half-written `final`: the old directory is renamed aside, the new one renamed in
    (both renames are atomic on a local filesystem), then the old one is deleted."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = final.with_name(final.name + ".__old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(staged, final)
    if old.exists():
        shutil.rmtree(old)
