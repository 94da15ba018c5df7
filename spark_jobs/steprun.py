"""What every step shares: typed input views, outputs staged then switched in, counts from Parquet
footers, and the entry point's report and exit codes.

- Inputs: each table of a zone becomes a view with every column of its SNDS schema, typed as ingest
  types it; a column the delivery did not have is NULL, and a missing optional table is an empty view
  with a warning, so the step's SQL never depends on which subset of a table CNAM delivered.
- Outputs: written under a staging location and switched in at the end (a directory rename locally,
  a version pointer on S3: see `lakefs`), so a failed or re-run step never leaves a partial output
  visible. Locations are local paths or `s3://` URIs (`LakePath`); all file access goes through
  `lakefs`.
- Entry point: `run_step` parses the arguments, runs the step, writes its JSON report whatever
  happens, and returns 0 (success), 1 (expected failure: a one-line message naming files and rules,
  never values) or 2 (unexpected: frames logged, message withheld since it may quote data).
"""

from __future__ import annotations

import argparse
import logging
import time
import traceback
from typing import Callable

from spark_jobs import lakefs, sqlrender
from spark_jobs.bundle import code_origin
from spark_jobs.engines import Engine, open_engine, replace_directory
from spark_jobs.lakefs import LakePath
from spark_jobs.report import now_utc
from spark_jobs.stepargs import engine_settings, setup_logging
from spark_jobs.uris import SovereigntyError, check_within

log = logging.getLogger("snds.step")

#: SQL type of each value kind, as sql/ingest/_parse.sql produces it.
KIND_SQL_TYPES = {
    "string": "VARCHAR", "code": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN", "date": "DATE",
    "year": "INTEGER", "yearmonth": "INTEGER", "month": "INTEGER",
}


class StepError(RuntimeError):
    """An expected failure of a step (bad configuration, missing input, broken accounting): the message
    names files, tables and rules, never row values. `sections` go into the step's report all the same
    (a failed quality gate reports every check it ran)."""

    def __init__(self, message: str, sections: dict | None = None):
        super().__init__(message)
        self.sections = sections or {}


class AccountingError(StepError):
    """Rows in differ from rows out plus rows set aside (quarantined or removed by a named rule)."""


def parquet_files(directory) -> list[LakePath]:
    """The Parquet files under a directory (none if it does not exist), sorted."""
    return lakefs.list_files(directory, ".parquet")


def parquet_footer(path):
    """The footer (pyarrow FileMetaData) of one Parquet file, local or on S3."""
    import pyarrow.parquet as pq

    fs, inner = lakefs.filesystem(path)
    return pq.read_metadata(inner, filesystem=fs)


def parquet_rows(directory) -> int:
    """Rows in the Parquet files under a directory, from their footers."""
    return sum(parquet_footer(p).num_rows for p in parquet_files(directory))


def schema_columns(cfg, table: str) -> list[tuple[str, str]]:
    """(column, SQL type) of a table as ingest writes it, in schema order; yearly tables end with
    their `year` partition column."""
    columns = [(f["name"], KIND_SQL_TYPES[cfg.column_kind(table, f)[0]]) for f in cfg.schema(table)["fields"]]
    if cfg.tables[table].get("yearly"):
        columns.append(("year", "INTEGER"))
    return columns


#: The columns the clean step adds to a PMSI chaining table (clean/pmsi/pmsi_table_rows.sql).
STAY_DATES = {"stay_start": "DATE", "stay_end": "DATE"}


def require_zone(zone, step: str) -> None:
    """A zone an earlier step writes must be there, even when it holds no table (a partial extract):
    a missing one is a wrong location or a step that did not run, not an empty source."""
    if not lakefs.exists(zone):
        raise StepError(f"{zone}: not found (did the {step} step run for this release?)")


def register_table(engine: Engine, zone, table: str, cfg, view: str | None = None, retype: bool = True,
                   added: dict[str, str] | None = None) -> int | None:
    """Register `view` (default: the table's name) over `zone/<table>` with every schema column.
    With `retype` (ingest outputs) every column is cast to its schema type; without it (clean outputs,
    whose amounts are DECIMAL and which add columns such as stay dates) the written types are kept,
    and so are the columns the schema does not have. Columns the files lack are NULL either way.
    Returns the table's rows, or None when the zone has no such table (then the view is empty, with the
    `added` columns {name: type} an earlier step adds, e.g. the clean step's stay dates).
    `zone` is the zone's current location (`lakefs.current`)."""
    view = view or table
    directory = LakePath(zone) / table
    files = parquet_files(directory)
    columns = schema_columns(cfg, table)
    if not files:
        if cfg.tables[table].get("required"):
            raise StepError(f"{directory}: required table {table} is missing")
        log.warning("%s: no %s in this release; its events are empty", zone, table)
        select = ", ".join(f"CAST(NULL AS {t}) AS {sqlrender.ident(c)}" for c, t in [*columns, *(added or {}).items()])
        engine.create_view(view, f"SELECT {select} FROM (SELECT 1 AS _one) AS _empty WHERE _one = 0")
        return None
    written = list(dict.fromkeys(n for f in files for n in parquet_footer(f).schema.names if n != "year"))
    present = set(written) | ({"year"} if cfg.tables[table].get("yearly") else set())
    engine.read_parquet(f"{view}__files", directory)
    select = [
        f"CAST({sqlrender.ident(c)} AS {t}) AS {sqlrender.ident(c)}" if c in present and (retype or c == "year")
        else sqlrender.ident(c) if c in present else f"CAST(NULL AS {t}) AS {sqlrender.ident(c)}"
        for c, t in columns
    ]
    if not retype:
        known = {c for c, _ in columns}
        select += [sqlrender.ident(c) for c in written if c not in known]
    engine.create_view(view, f"SELECT {', '.join(select)} FROM {view}__files")
    return parquet_rows(directory)


def register_partitioned(engine: Engine, view: str, directory, column: str = "year") -> int:
    """Register `view` over a Hive-partitioned Parquet directory written by `write_partitioned`, the
    partition column typed INTEGER on both engines. Returns the rows (from the footers)."""
    if not parquet_files(directory):
        raise StepError(f"{directory}: no Parquet files (did the previous step run?)")
    engine.read_parquet(f"{view}__files", directory)
    columns = [c for c in engine.columns(f"{view}__files") if c != column]
    select = ", ".join(sqlrender.ident(c) for c in columns)
    engine.create_view(view, f"SELECT {select}, CAST({column} AS INTEGER) AS {column} FROM {view}__files")
    return parquet_rows(directory)


def run_tag(run_id: str) -> str:
    """A run id usable in a file name (Airflow run ids contain ':' and '+')."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run_id)


class StagedOutputs:
    """The outputs of one step run, switched in by `commit`: written under `<final>.__staging-<run>`
    on a local disk, under a new version `<final>/_v/<run>-<time>` on S3 (see `lakefs`)."""

    def __init__(self, final, run_id: str):
        self.final = LakePath(final)
        if self.final.is_s3:
            self.stage = lakefs.new_version(self.final, run_tag(run_id))
        else:
            self.stage = self.final.with_name(f"{self.final.name}.__staging-{run_tag(run_id)}")
        lakefs.delete_tree(self.stage)
        lakefs.make_dirs(self.stage)

    def write(self, engine: Engine, relative: str, sql: str, order_by: str | None = None) -> int:
        """Write `sql` to `<stage>/<relative>`; returns the rows written (from the footers)."""
        directory = self.stage / relative
        engine.write_parquet(sql, directory, order_by=order_by)
        return parquet_rows(directory)

    def write_view(self, engine: Engine, relative: str, view: str, columns: list[str],
                   order_columns: list[str], where: str | None = None) -> int:
        """Write `columns` of `view` (rows matching `where`) to `<stage>/<relative>`, in the order of
        `order_columns` (list them all for byte-identical reruns); returns the rows written."""
        select = ", ".join(sqlrender.ident(c) for c in columns)
        order = ", ".join(f"{sqlrender.ident(c)} AS _o{i + 1}" for i, c in enumerate(order_columns))
        sql = f"SELECT {select}, {order} FROM {view}" + (f" WHERE {where}" if where else "")
        return self.write(engine, relative, sql, order_by=", ".join(f"_o{i + 1}" for i in range(len(order_columns))))

    def write_partitioned(self, engine: Engine, relative: str, view: str, column: str, columns: list[str],
                          order_columns: list[str]) -> dict[int, int]:
        """Write `view` as `<relative>/<column>=<value>/` (Hive layout; integer values), `columns` only;
        returns rows per value. Rows whose `column` is NULL are not written: callers account for them.
        A view without rows (a source absent from the delivery) is written as one empty file with every
        column, `column` included, so that the next step reads an empty table of the declared schema."""
        written = {}
        for (value,) in sorted(engine.rows(f"SELECT DISTINCT {column} FROM {view} WHERE {column} IS NOT NULL")):
            written[int(value)] = self.write_view(engine, f"{relative}/{column}={int(value)}", view, columns,
                                                  order_columns, where=f"{column} = {int(value)}")
        if not written:
            self.write_view(engine, relative, view, [*[c for c in columns if c != column], column], order_columns,
                            where="false")
        return written

    def commit(self) -> None:
        if self.final.is_s3:
            lakefs.switch_version(self.final, self.stage)
        else:
            replace_directory(self.stage.local(), self.final.local())
        log.info("%s: switched in", self.final)

    def discard(self) -> None:
        lakefs.delete_tree(self.stage)


#: The arguments of the step entry points that name a storage location.
LOCATION_ARGS = ("input", "output", "quarantine", "truth", "ingest", "clean", "merge", "model", "run_dir", "lake",
                 "delivery", "nomenclatures", "report", "vault", "key_file")


def check_locations(args: argparse.Namespace) -> None:
    """Every location argument inside the `--allowed-root`s given (the region's storage); nothing to
    check when none is given (a step run by hand)."""
    roots = getattr(args, "allowed_root", None) or []
    if not roots:
        return
    for name in LOCATION_ARGS:
        value = getattr(args, name, None)
        if value:
            check_within(value, roots, f"--{name.replace('_', '-')}")


def run_step(step: str, parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace, Engine], dict],
             argv: list[str] | None = None, inputs: Callable[[argparse.Namespace], dict] | None = None,
             outputs: Callable[[argparse.Namespace], dict] | None = None, expected: tuple = ()) -> int:
    """Parse the arguments, open the engine, run `body(args, engine)` (which returns the report's
    sections, including `totals`) and write the step's report; returns the exit code."""
    args = parser.parse_args(argv)
    setup_logging()
    try:
        check_locations(args)
    except SovereigntyError as exc:
        log.error("%s refused: %s", step, exc)  # no report: its own location may be the foreign one
        return 1
    t0 = time.monotonic()
    report = {"step": step, "engine": args.engine, "release": args.release, "run_id": args.run_id,
              "started_at": now_utc(), "code": code_origin(), "inputs": inputs(args) if inputs else {},
              "outputs": outputs(args) if outputs else {}}
    try:
        with open_engine(args.engine, **engine_settings(args)) as engine:
            report.update(body(args, engine))
        report["status"] = "success"
    except (StepError, *expected) as exc:
        report.update(getattr(exc, "sections", {}))
        report["status"] = "failed"
        report["error"] = f"{type(exc).__name__}: {exc}"
        log.error("%s failed: %s", step, exc)
        return 1
    except Exception as exc:
        report["status"] = "failed"
        report["error"] = type(exc).__name__
        frames = "".join(traceback.format_tb(exc.__traceback__))
        access = lakefs.file_access_error(exc)
        if access:
            report["error"] += f": {access}"
            log.error("%s failed on a file access: %s\n%s", step, access, frames)
        else:
            log.error("%s failed with an unexpected %s (message withheld: it may quote data)\n%s",
                      step, type(exc).__name__, frames)
        return 2
    finally:
        report["seconds"] = round(time.monotonic() - t0, 3)
        lakefs.write_json(args.report, report)
    log.info("%s done in %.1f s: %s", step, report["seconds"],
             ", ".join(f"{k} {v:,}" for k, v in report.get("totals", {}).items()))
    return 0
