"""Merge step: the cleaned DCIR and PMSI as two long item tables, by year, with unified names.

    python -m spark_jobs.merge --engine duckdb --input CLEAN_ZONE --output MERGE_ZONE \
        --report REPORT.json --release R --run-id ID
    spark-submit spark_jobs/merge.py --engine spark ...   (same arguments)

`<output>/dcir/year=Y/`: one row per DCIR item (a cleaned ER_PRS_F line, or one row of a detail
table), dated by its care date; `<output>/pmsi/year=Y/`: one row per PMSI stay, diagnosis field and
act, by PMSI file year. The native code columns of each table (PHA_PRS_C13, BIO_PRS_IDE, CAM_PRS_IDE,
DGN_PAL, ASS_DGN, CDC_ACT, CCAM_ACT, ...) become one `code` column, with `code_column` naming the
native one. Epidemiologists can review these tables before the model step selects events from them
(sql/merge/, config/model.yaml).

Accounting: every cleaned DCIR row is exactly one item (checked per table); PMSI items are counted
per source and kind.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import yaml

from spark_jobs import sqlrender
from spark_jobs.bundle import resource
from spark_jobs.clean import load_clean_config
from spark_jobs.delivery import CONFIG_DIR, DeliveryError, IngestConfig
from spark_jobs import lakefs
from spark_jobs.engines import Engine
from spark_jobs.stepargs import add_config_args, step_parser
from spark_jobs.steprun import STAY_DATES, AccountingError, StagedOutputs, StepError, register_table, require_zone, run_step

log = logging.getLogger("snds.merge")

DCIR_ORDER = ["patient_id", "event_date", "item", "code", "source_table", "code_column", "quantity", "FLX_DIS_DTD",
              "event_end_date", "PRS_NAT_REF", "PSE_SPE_COD", "PFS_EXE_NUM", "ETB_PRE_FIN", "CPL_MAJ_TOP",
              "CPL_AFF_COD", "BEN_CMU_TOP", "BEN_RNG_GEM", "BEN_SEX_COD", "BEN_NAI_ANN", "BEN_DCD_DTE", "BEN_DCD_AME",
              "PRS_PAI_MNT", "BSE_REM_BSE", "BSE_REM_MNT", "CPL_REM_MNT"]
PMSI_ORDER = ["patient_id", "source", "eta_num", "stay_id", "item", "code_type", "code", "source_table", "date",
              "end_date", "ENT_MOD", "SOR_MOD", "ghm"]


def load_model_config(path: str | Path | None = None) -> dict:
    path = resource(path) if path else CONFIG_DIR / "model.yaml"
    try:
        with open(path, encoding="utf-8") as fh:
            cfg = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise StepError(f"{path}: cannot read the model configuration ({exc.strerror})") from None
    for section in ("merge", "model", "costs"):
        if section not in cfg:
            raise StepError(f"{path}: missing section `{section}`")
    return cfg


def run_merge(engine: Engine, clean, output, icfg: IngestConfig, mcfg: dict, run_id: str,
              ccfg: dict | None = None) -> dict:
    ccfg = ccfg or load_clean_config()  # the DCIR join keys
    merge = mcfg["merge"]
    # Each source family's clean zone is switched in on its own (its current version, on S3).
    dcir_zone, pmsi_zone = (lakefs.current(lakefs.LakePath(clean) / source) for source in ("dcir", "pmsi"))
    require_zone(dcir_zone, "clean_dcir")
    require_zone(pmsi_zone, "clean_pmsi")
    output = lakefs.LakePath(output)
    out = StagedOutputs(output, run_id)
    try:
        started = time.monotonic()
        rows_in = {t: register_table(engine, dcir_zone, t, icfg, retype=False) or 0
                   for t in ["ER_PRS_F", *merge["dcir_items"]]}
        engine.create_view("dcir_items", sqlrender.render(
            "merge/dcir_items.sql", items=merge["dcir_items"], join_keys=ccfg["dcir"]["join_keys"]), materialize=True)
        per_table: dict[str, int] = {}
        dcir_counts: dict[str, int] = {}
        for table, item, n in sorted(engine.rows("SELECT source_table, item, count(*) FROM dcir_items GROUP BY source_table, item")):
            per_table[table] = per_table.get(table, 0) + int(n)
            dcir_counts[item] = dcir_counts.get(item, 0) + int(n)
        dcir_counts = dict(sorted(dcir_counts.items()))
        for table, n in rows_in.items():
            if per_table.get(table, 0) != n:
                raise AccountingError(f"merge: {n} cleaned {table} rows gave {per_table.get(table, 0)} DCIR items "
                                      "(a detail row without its line, or a line key repeated)")
        dcir_years = out.write_partitioned(engine, "dcir", "dcir_items", "year", DCIR_ORDER, DCIR_ORDER)
        if sum(dcir_years.values()) != sum(rows_in.values()):
            raise AccountingError(f"merge: {sum(rows_in.values()) - sum(dcir_years.values())} DCIR items have no date")
        engine.drop_view("dcir_items")
        dcir_seconds = time.monotonic() - started
        log.info("merge dcir: %d items (%s) in %d years (%.1f s)", sum(dcir_counts.values()),
                 ", ".join(f"{k} {v}" for k, v in dcir_counts.items()), len(dcir_years), dcir_seconds)

        started = time.monotonic()
        pmsi_rows_in: dict[str, int] = {}
        parts = []
        for name, spec in merge["pmsi_sources"].items():
            tables = {spec["chaining_table"], spec["stay_table"], *(d["table"] for d in spec["diagnoses"]),
                      *(p["table"] for p in spec["procedures"])}
            for t in sorted(tables):
                pmsi_rows_in[t] = register_table(engine, pmsi_zone, t, icfg, retype=False,
                                                 added=STAY_DATES if t == spec["chaining_table"] else None) or 0
            parts.append(sqlrender.render("merge/pmsi_items.sql", source={**spec, "name": name},
                                          b_columns=engine.columns(spec["stay_table"])))
        engine.create_view("pmsi_items", "\nUNION ALL\n".join(f"SELECT * FROM ({p}) AS {n}" for p, n in
                                                                 zip(parts, merge["pmsi_sources"])), materialize=True)
        pmsi_years = out.write_partitioned(engine, "pmsi", "pmsi_items", "year", PMSI_ORDER + ["code_column"],
                                           PMSI_ORDER + ["code_column"])
        pmsi_counts: dict[str, dict[str, int]] = {}
        for source, item, n in sorted(engine.rows("SELECT source, item, count(*) FROM pmsi_items GROUP BY source, item")):
            pmsi_counts.setdefault(source, {})[item] = int(n)
        total = sum(n for counts in pmsi_counts.values() for n in counts.values())
        if sum(pmsi_years.values()) != total:
            raise AccountingError(f"merge: {total - sum(pmsi_years.values())} PMSI items have no year")
        engine.drop_view("pmsi_items")
        pmsi_seconds = time.monotonic() - started
        log.info("merge pmsi: %d items (%s) in %d years (%.1f s)", total,
                 "; ".join(f"{s}: " + ", ".join(f"{k} {v}" for k, v in c.items()) for s, c in pmsi_counts.items()),
                 len(pmsi_years), pmsi_seconds)
    except BaseException:
        out.discard()
        raise
    out.commit()
    return {
        "tables": {
            "dcir": {"path": str(output / "dcir"), "rows_read": sum(rows_in.values()), "rows": sum(dcir_years.values()),
                     "rows_by_year": dcir_years, "items": dcir_counts, "inputs": rows_in,
                     "seconds": round(dcir_seconds, 3)},
            "pmsi": {"path": str(output / "pmsi"), "rows_read": sum(pmsi_rows_in.values()),
                     "rows": sum(pmsi_years.values()), "rows_by_year": pmsi_years, "items": pmsi_counts,
                     "inputs": pmsi_rows_in, "seconds": round(pmsi_seconds, 3)},
        },
        "totals": {"rows_read": sum(rows_in.values()) + sum(pmsi_rows_in.values()),
                   "dcir_items": sum(dcir_years.values()), "pmsi_items": sum(pmsi_years.values())},
    }


def main(argv: list[str] | None = None) -> int:
    p = step_parser("merge", "Cleaned DCIR and PMSI -> item tables by year and source, with unified names")
    p.add_argument("--input", required=True, help="clean zone of the release (with dcir/ and pmsi/)")
    p.add_argument("--output", required=True, help="merge zone of the release")
    add_config_args(p, clean=True, model=True)

    def body(args, engine: Engine) -> dict:
        return run_merge(engine, args.input, args.output, IngestConfig.load(args.config),
                         load_model_config(args.model_config), args.run_id, load_clean_config(args.clean_config))

    return run_step("merge", p, body, argv, inputs=lambda a: {"clean": a.input}, outputs=lambda a: {"merge": a.output},
                    expected=(DeliveryError,))


if __name__ == "__main__":
    sys.exit(main())
