"""Ingest step: a CNAM delivery directory (CSV) -> typed Parquet per table + quarantine per table.

    python -m spark_jobs.ingest --engine duckdb --input DELIVERY_DIR --output INGEST_URI \
        --quarantine QUARANTINE_URI --report REPORT.json --release R --run-id ID
    spark-submit spark_jobs/ingest.py --engine spark ...   (same arguments)

Every file is checked against its table's schema (header, column count, types, date formats). Lines
that do not parse go to the quarantine with their raw text and a reason; rows read = rows written +
rows quarantined, per file, or the step fails. Outputs are written aside and swapped in at the end, so
a failed or re-run step never leaves partial results visible.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path

from spark_jobs import sqlrender
from spark_jobs.delivery import DeliveredFile, DeliveryError, IngestConfig
from spark_jobs.engines import Engine, local_path, open_engine, replace_directory
from spark_jobs.report import now_utc, write_json_atomic
from spark_jobs.stepargs import engine_settings, setup_logging, step_parser

log = logging.getLogger("snds.ingest")

STEP = "ingest"


class AccountingError(RuntimeError):
    """Rows read differ from rows written plus rows quarantined."""


def parquet_rows(directory: Path) -> int:
    """Rows in the Parquet files of a directory, from their footers."""
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in sorted(directory.glob("*.parquet")))


def parse_sql(f: DeliveredFile, cfg: IngestConfig) -> str:
    return sqlrender.render(
        "ingest/parse_delivery_file.sql",
        separator=cfg.separator,
        columns=list(f.columns),
        columns_in_schema_order=f.columns_in_schema_order,
    )


def ingest_file(engine: Engine, f: DeliveredFile, cfg: IngestConfig, out_dir: Path, quarantine_dir: Path) -> dict:
    """Parse one delivered file; write its valid rows and its quarantine. Returns its counts."""
    started = time.monotonic()
    engine.read_lines("raw_lines", f.path, cfg.encoding)
    engine.create_view("parsed", parse_sql(f, cfg), materialize=True)
    by_reason: dict[str, int] = {}
    rows = 0
    for reason, n in engine.rows("SELECT _reason, count(*) FROM parsed GROUP BY _reason"):
        if reason is None:
            rows = int(n)
        else:
            by_reason[reason] = int(n)
    quarantined = sum(by_reason.values())
    total = rows + quarantined  # every parsed line is in exactly one group
    columns = ", ".join(sqlrender.ident(c.name) for c in f.columns_in_schema_order)
    engine.write_parquet(f"SELECT {columns} FROM parsed WHERE _reason IS NULL", out_dir / f.partition)
    if quarantined:
        engine.write_parquet(
            f"SELECT {sqlrender.sql_string(f.path.name)} AS source_file, _reason AS reason, _line AS raw_line "
            "FROM parsed WHERE _reason IS NOT NULL",
            quarantine_dir / f.partition,
        )
    engine.drop_view("parsed")
    engine.drop_view("raw_lines")
    # Accounting from what was actually written (Parquet footers), not from what was meant to be.
    written = parquet_rows(out_dir / f.partition)
    written_q = parquet_rows(quarantine_dir / f.partition) if quarantined else 0
    if written != rows or written_q != quarantined:
        raise AccountingError(
            f"{f.path}: {total} lines read, {rows} valid and {quarantined} quarantined, "
            f"but {written} and {written_q} rows were written"
        )
    seconds = round(time.monotonic() - started, 3)
    log.info(
        "ingest %s -> %s: %d rows read, %d written, %d quarantined (%.1f s)",
        f.path.name, f.partition, total, rows, quarantined, seconds,
    )
    return {
        "file": f.path.name,
        "year": f.year,
        "rows_read": int(total),
        "rows": rows,
        "quarantined": quarantined,
        "quarantine_reasons": dict(sorted(by_reason.items())),
        "seconds": seconds,
    }


def run_ingest(engine: Engine, input_dir: Path, output: Path, quarantine: Path, cfg: IngestConfig,
               run_id: str) -> dict:
    """Ingest a whole delivery. Returns the step's `tables`, `quarantine` and `totals` sections."""
    files = cfg.scan(input_dir)
    log.info("ingest: %d files in %s (%s)", len(files), input_dir, ", ".join(f.path.name for f in files))
    tag = "".join(ch if ch.isalnum() else "_" for ch in run_id)
    out_stage = output.with_name(f"{output.name}.__staging-{tag}")
    q_stage = quarantine.with_name(f"{quarantine.name}.__staging-{tag}")
    for d in (out_stage, q_stage):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    tables: dict[str, dict] = {}
    by_reason: dict[str, int] = {}
    by_table: dict[str, int] = {}
    try:
        for f in files:
            counts = ingest_file(engine, f, cfg, out_stage, q_stage)
            t = tables.setdefault(
                f.table,
                {"path": str(output / f.table), "rows_read": 0, "rows": 0, "quarantined": 0, "files": []},
            )
            for key in ("rows_read", "rows", "quarantined"):
                t[key] += counts[key]
            t["files"].append(counts)
            for reason, n in counts["quarantine_reasons"].items():
                by_reason[reason] = by_reason.get(reason, 0) + n
            if counts["quarantined"]:
                by_table[f.table] = by_table.get(f.table, 0) + counts["quarantined"]
    except BaseException:
        shutil.rmtree(out_stage, ignore_errors=True)
        shutil.rmtree(q_stage, ignore_errors=True)
        raise
    replace_directory(out_stage, output)
    replace_directory(q_stage, quarantine)
    totals = {
        "rows_read": sum(t["rows_read"] for t in tables.values()),
        "rows_written": sum(t["rows"] for t in tables.values()),
        "quarantined": sum(t["quarantined"] for t in tables.values()),
    }
    return {
        "tables": tables,
        "quarantine": {
            "path": str(quarantine),
            "rows": totals["quarantined"],
            "by_reason": dict(sorted(by_reason.items())),
            "by_table": dict(sorted(by_table.items())),
        },
        "totals": totals,
    }


def main(argv: list[str] | None = None) -> int:
    p = step_parser(STEP, "CSV delivery -> typed Parquet per table, with quarantine")
    p.add_argument("--input", required=True, help="delivery directory (path or file:// URI)")
    p.add_argument("--output", required=True, help="ingest zone of this release (typed Parquet)")
    p.add_argument("--quarantine", required=True, help="quarantine zone of this release")
    p.add_argument("--config", default=None, help="ingest configuration (default: config/ingest.yaml)")
    p.add_argument("--encoding", default=None, help="override the delivery encoding (utf-8, latin-1)")
    p.add_argument("--patient-id-column", default=None, choices=["BEN_NIR_PSA", "NUM_ENQ"],
                   help="override the delivery's patient column naming")
    args = p.parse_args(argv)
    setup_logging()
    cfg = IngestConfig.load(args.config, encoding=args.encoding, patient_id_column=args.patient_id_column)
    started, t0 = now_utc(), time.monotonic()
    report = {
        "step": STEP,
        "engine": args.engine,
        "release": args.release,
        "run_id": args.run_id,
        "started_at": started,
        "inputs": {"delivery": args.input},
        "outputs": {"ingest": args.output, "quarantine": args.quarantine},
    }
    report_path = local_path(args.report)
    try:
        with open_engine(args.engine, **engine_settings(args)) as engine:
            report.update(
                run_ingest(engine, local_path(args.input), local_path(args.output), local_path(args.quarantine),
                           cfg, args.run_id)
            )
        report["status"] = "success"
    except (DeliveryError, AccountingError) as exc:
        # Expected failures: a clear one-line message, no traceback.
        report["status"] = "failed"
        report["error"] = f"{type(exc).__name__}: {exc}"
        log.error("ingest failed: %s", exc)
        return 1
    except Exception as exc:
        report["status"] = "failed"
        report["error"] = type(exc).__name__
        raise
    finally:
        report["seconds"] = round(time.monotonic() - t0, 3)
        write_json_atomic(report_path, report)
    t = report["totals"]
    log.info(
        "ingest done: %d rows read, %d written, %d quarantined in %.1f s",
        t["rows_read"], t["rows_written"], t["quarantined"], report["seconds"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
