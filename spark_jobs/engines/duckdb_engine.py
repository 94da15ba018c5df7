"""DuckDB adapter: the embedded default engine (one machine, no cluster)."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile

import duckdb

from spark_jobs import lakefs

from .base import Engine

log = logging.getLogger(__name__)

# DuckDB names for the encodings a delivery may use.
_ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "latin-1": "latin-1", "iso-8859-1": "latin-1", "latin1": "latin-1",
              "cp1252": "cp1252", "windows-1252": "cp1252"}


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class DuckDBEngine(Engine):
    name = "duckdb"
    dialect = "duckdb"

    def __init__(self, memory_limit: str | None = None, threads: int | None = None, temp_directory: str | None = None):
        self._tmp = None
        if temp_directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="snds_duckdb_")
            temp_directory = self._tmp.name
        self._temp_directory = temp_directory
        self.con = duckdb.connect(":memory:")
        self.con.execute(f"SET temp_directory = {_quote_literal(temp_directory)}")
        # Insertion order is what makes single-file outputs byte-identical from run to run.
        self.con.execute("SET preserve_insertion_order = true")
        if memory_limit:
            self.con.execute(f"SET memory_limit = {_quote_literal(memory_limit)}")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self._s3 = False
        self._transcodes: dict[str, str] = {}

    def _location(self, location) -> str:
        """A location as DuckDB reads it; the first s3:// one registers the S3 filesystem."""
        loc = lakefs.LakePath(location)
        if loc.is_s3 and not self._s3:
            self.con.register_filesystem(lakefs.duckdb_s3_filesystem())
            self._s3 = True
        return str(loc)

    def read_lines(self, view: str, path, encoding: str, line_numbers: bool = True) -> None:
        enc = _ENCODINGS.get(encoding.lower())
        if enc is None:
            raise ValueError(f"unsupported encoding {encoding!r} (use utf-8, latin-1 or cp1252)")
        if enc == "cp1252":
            # DuckDB's reader knows no Windows-1252 (and refuses 0x80-0x9F as Latin-1): the file is
            # transcoded to UTF-8 beside the engine's spill files, streamed, and removed with the view.
            path, enc = self._transcoded(view, path), "utf-8"
        # One VARCHAR column per line: the \x01 delimiter and empty quote never split a line, so
        # splitting into fields is done by the step's SQL, identically on both engines.
        source = (
            f"read_csv({_quote_literal(self._location(path))}, columns = {{'line': 'VARCHAR'}}, delim = '\x01', quote = '', "
            f"escape = '', header = true, auto_detect = false, strict_mode = false, "
            f"encoding = {_quote_literal(enc)})"
        )
        if not line_numbers:
            self.con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT line, NULL::BIGINT AS _lineno FROM {source}")
            return
        # Line numbers: the lines are loaded into a table (in file order: insertion order is kept) and
        # its rowid numbers them. row_number() OVER () would do the same but serialises the whole read.
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {view}__lines AS SELECT line FROM {source}")
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT line, rowid AS _lineno FROM {view}__lines")

    def register_rows(self, view: str, columns: list[str], rows: list[tuple]) -> None:
        import pyarrow as pa

        data = list(zip(*rows)) if rows else [[] for _ in columns]
        table = pa.table({c: pa.array(list(v), type=pa.string()) for c, v in zip(columns, data)})
        self.con.execute(f"DROP TABLE IF EXISTS {view}")
        self.con.register(f"{view}__arrow", table)
        self.con.execute(f"CREATE TEMP TABLE {view} AS SELECT * FROM {view}__arrow")
        self.con.unregister(f"{view}__arrow")

    def register_pseudonymiser(self, pepper: bytes, params, workers: int) -> None:
        import pyarrow as pa
        from duckdb.sqltypes import VARCHAR

        from spark_jobs.vault import pseudonym_batch

        def snds_pseudonym(values):
            # Arrow batches of up to 2048 values, hashed on `workers` threads.
            batch = values.to_pylist()
            self._hashed += len(batch)
            return pa.array(pseudonym_batch(batch, pepper, params, workers), type=pa.string())

        self._hashed = 0
        self.con.create_function("snds_pseudonym", snds_pseudonym, [VARCHAR], VARCHAR, type="arrow",
                                 side_effects=False)

    def pseudonym_calls(self) -> int:
        return getattr(self, "_hashed", 0)

    def create_view(self, view: str, sql: str, materialize: bool = False, lookup: bool = False) -> None:
        kind = "TABLE" if materialize else "VIEW"
        self.con.execute(f"CREATE OR REPLACE TEMP {kind} {view} AS {sql}")

    def rows(self, sql: str) -> list[tuple]:
        return self.con.execute(sql).fetchall()

    def columns(self, view: str) -> list[str]:
        return [row[0] for row in self.con.execute(f"DESCRIBE {view}").fetchall()]

    def write_parquet(self, sql: str, directory, order_by: str | None = None) -> None:
        lakefs.make_dirs(directory)
        target = self._location(lakefs.LakePath(directory) / "part-00000.parquet")
        if order_by:
            sql = f"SELECT * EXCLUDE ({order_by}) FROM ({sql}) AS result ORDER BY {order_by}"  # "a, b" too
        self.con.execute(f"COPY ({sql}) TO {_quote_literal(target)} (FORMAT parquet, COMPRESSION zstd)")

    def read_parquet(self, view: str, directory) -> None:
        self.con.execute(
            f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM read_parquet("
            f"{_quote_literal(self._location(directory) + '/**/*.parquet')}, hive_partitioning = true, union_by_name = true)"
        )

    def _transcoded(self, view: str, path):
        """A UTF-8 copy of a Windows-1252 file, in the temp directory. Bytes that Windows-1252 leaves
        undefined become U+FFFD, as in Spark's windows-1252 decoder (same rows on both engines)."""
        tmp = self._temp_directory
        os.makedirs(os.path.join(tmp, "transcoded"), exist_ok=True)
        target = os.path.join(tmp, "transcoded", f"{view}.csv")
        fs, src = lakefs.filesystem(path)
        with fs.open_input_stream(src) as fh, open(target, "w", encoding="utf-8", newline="") as out:
            while chunk := fh.read(1 << 22):
                out.write(chunk.decode("cp1252", errors="replace"))
        self._transcodes[view] = target
        return target

    def drop_view(self, view: str) -> None:
        if view in self._transcodes:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._transcodes.pop(view))
        # The same name is either a view or a materialised table (plus the lines table of read_lines).
        for kind, name in (("VIEW", view), ("TABLE", view), ("TABLE", f"{view}__lines")):
            try:
                self.con.execute(f"DROP {kind} IF EXISTS {name}")
            except duckdb.CatalogException:
                pass

    def close(self) -> None:
        self.con.close()
        if self._tmp is not None:
            self._tmp.cleanup()
