"""Ingest step: a CNAM delivery directory (CSV) -> typed, pseudonymised Parquet per table + quarantine.

    python -m spark_jobs.ingest --engine duckdb --input DELIVERY_DIR --output INGEST_URI \
        --quarantine QUARANTINE_URI --report REPORT.json --release R --run-id ID \
        --vault VAULT_DIR --key-file KEY_FILE
    spark-submit spark_jobs/ingest.py --engine spark ...   (same arguments)

Every file is checked against its table's schema (header, column count, types, date formats). Lines
that do not parse go to the quarantine with a reason; rows read = rows written + rows quarantined +
rows dropped by a named rule, per file, or the step fails.

Identifiers never leave this step in clear (docs/pseudonymisation.md): a first pass collects the
distinct raw identifiers of every file, the ones the region's vault does not know are hashed once
(argon2id UDF, in parallel), and the parse joins the pseudonyms back in place of the raw values; the
quarantine keeps its lines with the identifiers replaced. The new mappings are sealed into the vault
as a pending delta (merged into a new vault version by the vault-update task). Outputs are written
aside and swapped in at the end, so a failed or re-run step never leaves partial results visible.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from spark_jobs import sqlrender
from spark_jobs.delivery import DeliveredFile, DeliveryError, IngestConfig
from spark_jobs import lakefs
from spark_jobs.engines import Engine
from spark_jobs.keys import KeyProviderError
from spark_jobs.stepargs import (add_config_args, add_profile_args, add_pseudonymisation_args, ingest_config_from_args,
                                 key_provider_from_args, step_parser)
from spark_jobs.steprun import AccountingError, StagedOutputs, parquet_rows, run_step, run_tag
from spark_jobs.vault import Argon2Params, Vault, VaultError, check_params, check_separate

log = logging.getLogger("snds.ingest")

STEP = "ingest"


@dataclass
class Pseudonymisation:
    """What the step needs to pseudonymise: the region's vault (with its key provider), the argon2
    parameters configured for the region, and how many threads may hash at once."""

    vault: Vault
    params: Argon2Params
    workers: int = 1


def parse_sql(f: DeliveredFile, cfg: IngestConfig) -> str:
    patient = f.patient_column
    return sqlrender.render(
        "ingest/parse_delivery_file.sql",
        separator=cfg.separator,
        columns=list(f.columns),
        columns_in_schema_order=f.columns_in_schema_order,
        identifier_columns=f.identifier_columns,
        patient_column=patient,
        unlinked_rule=cfg.unlinked_patient_rules.get(patient.name) if patient else None,
        placeholders=list(cfg.placeholder_ids),
    )


@contextlib.contextmanager
def undecodable_is_delivery_error(files: list[DeliveredFile], encoding: str):
    """A file that is not valid in the delivery's encoding is a delivery error naming the file. The
    reader's own message quotes the offending line, so it is never repeated (identifiers)."""
    try:
        yield
    except Exception as exc:
        message = str(exc)
        if "unicode" not in message.lower() and "decod" not in message.lower():
            raise
        named = [f.path for f in files if str(f.path) in message] or [f.path for f in files]
        raise DeliveryError(f"{', '.join(map(str, named))}: not valid {encoding} (invalid byte sequence); "
                            "check delivery.encoding") from None


def build_release_id_map(engine: Engine, files: list[DeliveredFile], cfg: IngestConfig,
                         pseudo: Pseudonymisation) -> tuple[dict, dict[str, str]]:
    """Registers `id_map(raw_id, pseudonym)` for every identifier of the release and returns the
    pseudonymisation report section and the new mappings (raw -> pseudonym, for the vault only).

    Pass 1 collects the distinct raw identifiers of every file (identifier fields only); the ones the
    vault does not know are hashed once, in parallel, by the engine's snds_pseudonym UDF."""
    started = time.monotonic()
    vault = pseudo.vault
    known, vault_params = vault.load(include_pending=True)
    check_params(vault.root, vault_params, pseudo.params)
    engine.register_pseudonymiser(vault.keys.pepper(), pseudo.params, pseudo.workers)
    engine.register_rows("vault_ids", ["raw_id", "pseudonym"], sorted(known.items()))
    sources = []
    for i, f in enumerate(files):
        if f.identifier_columns:
            engine.read_lines(f"raw_lines_{i}", f.path, cfg.encoding, line_numbers=False)
            sources.append({"view": f"raw_lines_{i}", "positions": [c.position for c in f.identifier_columns],
                            "fields": len(f.columns)})
    if sources:
        with undecodable_is_delivery_error([f for f in files if f.identifier_columns], cfg.encoding):
            engine.create_view(
                "release_ids",
                sqlrender.render("pseudonymise/release_identifiers.sql", sources=sources, separator=cfg.separator),
                materialize=True,
            )
        for source in sources:
            engine.drop_view(source["view"])
    else:
        engine.register_rows("release_ids", ["raw_id"], [])
    collected = time.monotonic()
    engine.create_view("new_ids", sqlrender.render("pseudonymise/new_identifiers.sql",
                                                   placeholders=list(cfg.placeholder_ids)), materialize=True)
    engine.spread("new_ids")  # argon2 is the costly part: every core gets a share
    engine.create_view("new_pseudonyms", sqlrender.render("pseudonymise/hash_new_identifiers.sql"), materialize=True)
    engine.drop_view("new_ids")
    engine.create_view("id_map", sqlrender.render("pseudonymise/release_id_map.sql"), materialize=True, lookup=True)
    new = dict(engine.rows("SELECT raw_id, pseudonym FROM new_pseudonyms"))
    (identifiers,), = engine.rows("SELECT count(*) FROM id_map")
    hash_seconds = time.monotonic() - collected
    section = {
        "vault": str(vault.root),
        "vault_version": vault.current_version(),
        "vault_entries": len(known),
        "key_id": vault.keys.key_id(),
        "argon2": asdict(pseudo.params),
        "identifiers": int(identifiers),
        "known": int(identifiers) - len(new),
        "hashed": len(new),
        "hash_workers": pseudo.workers,
        "collect_seconds": round(collected - started, 3),
        "hash_seconds": round(hash_seconds, 3),
    }
    log.info(
        "pseudonymise: %d distinct identifiers in %d files, %d known to vault %s, %d hashed (%.1f s, %d workers)",
        identifiers, len(sources), section["known"], section["vault_version"] or "(empty)", len(new),
        hash_seconds, pseudo.workers,
    )
    return section, new


def ingest_file(engine: Engine, f: DeliveredFile, cfg: IngestConfig, out_dir, quarantine_dir) -> dict:
    """Parse one delivered file; write its valid rows and its quarantine. Returns its counts."""
    started = time.monotonic()
    with undecodable_is_delivery_error([f], cfg.encoding):
        engine.read_lines("raw_lines", f.path, cfg.encoding)
        engine.create_view("parsed", parse_sql(f, cfg), materialize=True)
    by_reason: dict[str, int] = {}
    by_rule: dict[str, int] = {}
    nulled: dict[tuple[str, str], dict[str, int]] = {}  # (column, reason) -> {shape: cells}
    rows = 0
    for reason, rule, cells, n in engine.rows(
            "SELECT _reason, _dropped_by, _nulled, count(*) FROM parsed GROUP BY _reason, _dropped_by, _nulled"):
        if reason is not None:
            by_reason[reason] = by_reason.get(reason, 0) + int(n)
        elif rule is not None:
            by_rule[rule] = by_rule.get(rule, 0) + int(n)
        else:
            rows += int(n)
            for entry in (cells.split(";") if cells else ()):
                column, why, shape = entry.split("|", 2)
                shapes = nulled.setdefault((column, why), {})
                shapes[shape] = shapes.get(shape, 0) + int(n)
    quarantined, dropped = sum(by_reason.values()), sum(by_rule.values())
    total = rows + quarantined + dropped  # every parsed line is in exactly one group
    columns = ", ".join(sqlrender.ident(c.name) for c in f.columns_in_schema_order)
    # In line order, whatever the identifier joins did to it: byte-identical reruns. (Without
    # identifier columns there is no join, and both engines keep the file's order by themselves.)
    order = "_lineno" if f.identifier_columns else None
    engine.write_parquet(
        f"SELECT {columns}{', _lineno' if order else ''} FROM parsed WHERE _reason IS NULL AND _dropped_by IS NULL",
        out_dir / f.partition, order_by=order,
    )
    if quarantined:
        engine.write_parquet(
            sqlrender.render("pseudonymise/quarantine_lines.sql", separator=cfg.separator, source_file=f.path.name),
            quarantine_dir / f.partition, order_by="_lineno",
        )
    engine.drop_view("parsed")
    engine.drop_view("raw_lines")
    # Accounting from what was actually written (Parquet footers), not from what was meant to be.
    written = parquet_rows(out_dir / f.partition)
    written_q = parquet_rows(quarantine_dir / f.partition) if quarantined else 0
    if written != rows or written_q != quarantined:
        raise AccountingError(
            f"{f.path}: {total} lines read, {rows} valid, {quarantined} quarantined and {dropped} dropped "
            f"by rule, but {written} and {written_q} rows were written"
        )
    seconds = round(time.monotonic() - started, 3)
    nulled_cells = {f"{column}|{why}": sum(shapes.values()) for (column, why), shapes in sorted(nulled.items())}
    log.info(
        "ingest %s -> %s: %d rows read, %d written, %d quarantined, %d dropped by rule%s (%.1f s)",
        f.path.name, f.partition, total, rows, quarantined, dropped,
        f", {sum(nulled_cells.values())} unreadable cells nulled in {len(nulled)} column(s)" if nulled else "",
        seconds,
    )
    return {
        "file": f.path.name,
        "year": f.year,
        "catalogued": f.catalogued,
        "missing_columns": list(f.missing_columns),
        "extra_columns": list(f.extra_columns),
        "nulled_cells": [{"column": column, "reason": why, "cells": sum(shapes.values()),
                          "shapes": dict(sorted(shapes.items(), key=lambda kv: (-kv[1], kv[0]))[:5])}
                         for (column, why), shapes in sorted(nulled.items())],
        "rows_read": int(total),
        "rows": rows,
        "quarantined": quarantined,
        "quarantine_reasons": dict(sorted(by_reason.items())),
        "dropped": dropped,
        "dropped_by_rule": dict(sorted(by_rule.items())),
        "seconds": seconds,
    }


def delivery_section(files: list[DeliveredFile], skipped: list[str]) -> dict:
    """What the delivery held, for the report and the summary: the sources present and absent, the
    uncatalogued files (ingested as text or skipped), and the columns that tables lack or add."""
    present = sorted({source_of(f.table) for f in files if f.catalogued} - {None})
    return {
        "sources_present": present,
        "sources_absent": [s for s in SOURCES if s not in present],
        "uncatalogued": sorted({f.path.name: f.table for f in files if not f.catalogued}.items()),
        "skipped": skipped,
        # Schema columns each table's files lack (the full list is in each file's entry): most SNDS
        # extracts carry a subset of the catalogue's columns; what matters to the rules is reported by
        # the clean steps (missing_rule_inputs).
        "schema_columns_missing": {t: max(len(f.missing_columns) for f in files if f.table == t)
                                   for t in sorted({f.table for f in files if f.catalogued and f.missing_columns})},
        "extra_columns": {f.table: list(f.extra_columns) for f in files if f.extra_columns},
    }


#: The sources of a delivery, by table-name prefix (the report says which were absent).
SOURCES = ("DCIR", "PMSI_MCO", "PMSI_SSR", "PMSI_HAD", "PMSI_RIP", "referential")


def source_of(table: str) -> str | None:
    for prefix, source in (("ER_", "DCIR"), ("T_MCO", "PMSI_MCO"), ("T_SSR", "PMSI_SSR"), ("T_HAD", "PMSI_HAD"),
                           ("T_RIP", "PMSI_RIP"), ("IR_", "referential"), ("KI_", "referential"),
                           ("REF_", "referential")):
        if table.startswith(prefix):
            return source
    return None


#: Where a synthetic delivery (snds_synth) keeps its ground truth, beside the delivered files.
TRUTH_DIR = "_truth"


def pseudonymise_truth(engine: Engine, input_dir, out: StagedOutputs) -> dict[str, int]:
    """Synthetic deliveries only: write each truth event table (`_truth/events/<table>.csv`) to
    `<truth zone>/<table>/` with its patient ids pseudonymised through the release's `id_map`, for the
    model gate's comparison with the truth. Returns rows per table (none for a real delivery)."""
    events = lakefs.LakePath(input_dir) / TRUTH_DIR / "events"
    written = {}
    for path in lakefs.list_files(events, ".csv", recursive=False):
        columns = lakefs.read_first_line(path).decode("utf-8").strip().split(",")
        if "patient_id" not in columns:
            continue
        engine.read_lines("truth_lines", path, "utf-8")
        table = path.name[: -len(".csv")]
        written[table] = out.write(engine, table, sqlrender.render("pseudonymise/truth_events.sql", columns=columns),
                                   order_by="_lineno")
        engine.drop_view("truth_lines")
    if written:
        log.info("ingest: generator's truth pseudonymised (%s)", ", ".join(f"{t} {n}" for t, n in written.items()))
    return written


def run_ingest(engine: Engine, input_dir, output, quarantine, cfg: IngestConfig,
               run_id: str, pseudo: Pseudonymisation, truth=None) -> dict:
    """Ingest a whole delivery. Returns the step's `tables`, `quarantine`, `dropped_by_rule`,
    `pseudonymisation` and `totals` sections (and `truth` when given a truth zone: see
    pseudonymise_truth)."""
    output, quarantine = lakefs.LakePath(output), lakefs.LakePath(quarantine)
    for zone in (output, quarantine) + ((lakefs.LakePath(truth),) if truth else ()):
        check_separate(pseudo.vault.root, zone)
    files = cfg.scan(input_dir)
    skipped = cfg.skipped(input_dir) if cfg.profile.uncatalogued == "skip" else []
    log.info("ingest: %d files in %s (%s), profile %s", len(files), input_dir, ", ".join(f.path.name for f in files),
             cfg.profile.name)
    # Keys and vault are opened (and identifiers hashed) before anything is written: a wrong key or a
    # damaged vault stops the step with the lake untouched.
    pseudonymisation, new_mappings = build_release_id_map(engine, files, cfg, pseudo)
    out, q_out = StagedOutputs(output, run_id), StagedOutputs(quarantine, run_id)
    t_out = StagedOutputs(truth, run_id) if truth else None
    truth_rows = None
    # Input checksums for the run's audit record. A local delivery is hashed on a thread while the engine
    # parses (hashlib and the engines release the GIL); one on S3 file by file after its parse, so that
    # no object is read by two clients at once.
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
    checksums = {f.path: hasher.submit(lakefs.sha256, f.path) for f in files if not f.path.is_s3}
    tables: dict[str, dict] = {}
    by_reason: dict[str, int] = {}
    by_table: dict[str, int] = {}
    by_rule: dict[str, dict[str, int]] = {}
    nulled: list[dict] = []
    try:
        for f in files:
            counts = ingest_file(engine, f, cfg, out.stage, q_out.stage)
            counts["sha256"], counts["bytes"] = (checksums[f.path].result() if f.path in checksums
                                                 else lakefs.sha256(f.path))
            t = tables.setdefault(
                f.table,
                {"path": str(output / f.table), "catalogued": f.catalogued, "rows_read": 0, "rows": 0,
                 "quarantined": 0, "dropped": 0, "nulled_cells": 0, "extra_columns": [], "files": []},
            )
            for key in ("rows_read", "rows", "quarantined", "dropped"):
                t[key] += counts[key]
            t["nulled_cells"] += sum(c["cells"] for c in counts["nulled_cells"])
            t["extra_columns"] = sorted(set(t["extra_columns"]) | set(f.extra_columns))
            for cell in counts["nulled_cells"]:
                nulled.append({"table": f.table, "year": f.year, **cell})
            t["files"].append(counts)
            for reason, n in counts["quarantine_reasons"].items():
                by_reason[reason] = by_reason.get(reason, 0) + n
            if counts["quarantined"]:
                by_table[f.table] = by_table.get(f.table, 0) + counts["quarantined"]
            for rule, n in counts["dropped_by_rule"].items():
                by_rule.setdefault(rule, {})[f.table] = by_rule.get(rule, {}).get(f.table, 0) + n
        if t_out:
            truth_rows = pseudonymise_truth(engine, input_dir, t_out)
        for view in ("id_map", "new_pseudonyms", "release_ids", "vault_ids"):
            engine.drop_view(view)
        pseudonymisation["hash_calls"] = engine.pseudonym_calls()
        # The new mappings are sealed into the vault before the outputs that use them become visible.
        delta = pseudo.vault.add_pending(run_tag(run_id), new_mappings, pseudo.params)
        pseudonymisation["pending_delta"] = str(delta) if delta else None
        new_mappings.clear()
    except BaseException:
        for staged in (out, q_out, t_out):
            if staged:
                staged.discard()
        raise
    finally:
        hasher.shutdown(cancel_futures=True)
    out.commit()
    q_out.commit()
    if t_out:  # a real delivery leaves the zone empty: no stale truth of an earlier delivery
        t_out.commit()
    totals = {
        "rows_read": sum(t["rows_read"] for t in tables.values()),
        "rows_written": sum(t["rows"] for t in tables.values()),
        "quarantined": sum(t["quarantined"] for t in tables.values()),
        "dropped_by_rule": sum(t["dropped"] for t in tables.values()),
    }
    totals["nulled_cells"] = sum(n["cells"] for n in nulled)
    return {
        "profile": cfg.profile.to_dict(),
        "tables": tables,
        "quarantine": {
            "path": str(quarantine),
            "rows": totals["quarantined"],
            "by_reason": dict(sorted(by_reason.items())),
            "by_table": dict(sorted(by_table.items())),
            # Cells whose value did not parse as the column's type, set to NULL with the row kept
            # (columns no rule needs: config/ingest.yaml rule_columns).
            "nulled_cells": nulled,
        },
        "delivery": delivery_section(files, skipped),
        "dropped_by_rule": {rule: dict(sorted(t.items())) for rule, t in sorted(by_rule.items())},
        "rules_applied": sorted(set(cfg.unlinked_patient_rules.values())),
        "pseudonymisation": pseudonymisation,
        "totals": totals,
        **({"truth": {"path": str(truth), "tables": truth_rows}} if truth else {}),
    }


def main(argv: list[str] | None = None) -> int:
    p = step_parser(STEP, "CSV delivery -> typed, pseudonymised Parquet per table, with quarantine")
    p.add_argument("--input", required=True, help="delivery directory (path or file:// URI)")
    p.add_argument("--output", required=True, help="ingest zone of this release (typed Parquet)")
    p.add_argument("--quarantine", required=True, help="quarantine zone of this release")
    p.add_argument("--truth", default=None,
                   help="truth zone of this release: a synthetic delivery's ground truth, pseudonymised "
                        "(for the model gate); left empty for a real delivery")
    add_config_args(p)
    add_profile_args(p)
    p.add_argument("--hash-workers", type=int, default=None,
                   help="threads hashing identifiers on DuckDB (default: --duckdb-threads or all cores)")
    add_pseudonymisation_args(p)

    def body(args, engine: Engine) -> dict:
        cfg = ingest_config_from_args(args, args.input)
        keys, vault_root, params = key_provider_from_args(args)
        workers = args.hash_workers or args.duckdb_threads or os.cpu_count() or 1
        pseudo = Pseudonymisation(Vault(vault_root, keys), params, workers)
        result = run_ingest(engine, args.input, args.output, args.quarantine,
                            cfg, args.run_id, pseudo, truth=args.truth)
        ps = result["pseudonymisation"]
        log.info("ingest: %d distinct identifiers, %d hashed", ps["identifiers"], ps["hashed"])
        return result

    return run_step(STEP, p, body, argv,
                    inputs=lambda a: {"delivery": a.input},
                    outputs=lambda a: {"ingest": a.output, "quarantine": a.quarantine,
                                       **({"truth": a.truth} if a.truth else {})},
                    expected=(DeliveryError, VaultError, KeyProviderError))


if __name__ == "__main__":
    sys.exit(main())
