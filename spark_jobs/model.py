"""Model step: the epidemiological event tables, from the merge zone and the referentials.

    python -m spark_jobs.model --engine duckdb --input MERGE_ZONE --ingest INGEST_ZONE --output MODEL_ZONE \
        --report REPORT.json --release R --run-id ID
    spark-submit spark_jobs/model.py --engine spark ...   (same arguments)

Tables, columns and types are declared in sql/model/model.yaml (the data dictionary,
docs/data-dictionary.md, is generated from it); each table is sql/model/<table>.sql, with the code
lists and thresholds of config/model.yaml. Every table is keyed by the patient pseudonym. Outputs
are written aside and switched in at the end.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import yaml

from spark_jobs import sqlrender
from spark_jobs.delivery import DeliveryError, IngestConfig
from spark_jobs import lakefs
from spark_jobs.engines import Engine
from spark_jobs.merge import load_model_config
from spark_jobs.stepargs import add_config_args, step_parser
from spark_jobs.steprun import StagedOutputs, StepError, register_partitioned, register_table, run_step

log = logging.getLogger("snds.model")

MODEL_SCHEMA = sqlrender.SQL_DIR / "model" / "model.yaml"
#: Referential tables the model reads from the ingest zone (optional ones may be missing).
REFERENTIALS = ("IR_BEN_R", "IR_IMB_R", "IR_PHA_R", "REF_ATC_DDD", "KI_CCI_R")
#: Build order: a table may read the tables built before it.
BUILD_ORDER = ("stays", "deaths_by_source", "diagnoses", "procedures", "consults", "biology", "devices",
               "drug_dispensations", "cmuc", "patients")


def load_model_schema(path: Path = MODEL_SCHEMA) -> dict:
    """sql/model/model.yaml: {table: {description, order_by, columns: [{name, type, description, source}]}}."""
    with open(path, encoding="utf-8") as fh:
        schema = yaml.safe_load(fh)
    for table, spec in schema.items():
        names = [c["name"] for c in spec["columns"]]
        missing = [c for c in spec["order_by"] if c not in names]
        if missing or not (sqlrender.SQL_DIR / "model" / f"{table}.sql").exists():
            raise StepError(f"{path}: {table}: order_by {missing} not among its columns, or no sql/model/{table}.sql")
    if set(schema) != set(BUILD_ORDER):
        raise StepError(f"{path}: tables {sorted(schema)} differ from the build order {sorted(BUILD_ORDER)}")
    return schema


def run_model(engine: Engine, merge, ingest, output, icfg: IngestConfig, mcfg: dict,
              run_id: str) -> dict:
    merge, ingest, output = lakefs.current(merge), lakefs.current(ingest), lakefs.LakePath(output)
    schema = load_model_schema()
    params = dict(mcfg["model"])
    params["missing_before_year"] = params.pop("missing_date_before_year")
    inputs = {"dcir": register_partitioned(engine, "dcir", merge / "dcir"),
              "pmsi": register_partitioned(engine, "pmsi", merge / "pmsi")}
    missing = []
    for table in REFERENTIALS:
        rows = register_table(engine, ingest, table, icfg)
        inputs[table] = rows or 0
        if rows is None:
            missing.append(table)
    out = StagedOutputs(output, run_id)
    tables = {}
    try:
        for table in BUILD_ORDER:
            started = time.monotonic()
            spec = schema[table]
            engine.create_view(f"{table}__rows", sqlrender.render(f"model/{table}.sql", **params))
            columns = [c["name"] for c in spec["columns"]]
            typed = ", ".join(f"CAST({sqlrender.ident(c['name'])} AS {c['type']}) AS {sqlrender.ident(c['name'])}"
                              for c in spec["columns"])
            engine.create_view(table, f"SELECT {typed} FROM {table}__rows", materialize=True)
            order = spec["order_by"] + [c for c in columns if c not in spec["order_by"]]
            rows = out.write_view(engine, table, table, columns, order)
            tables[table] = {"path": str(output / table), "rows": rows, "seconds": round(time.monotonic() - started, 3)}
            log.info("model %s: %d rows (%.1f s)", table, rows, tables[table]["seconds"])
        for table in BUILD_ORDER:
            engine.drop_view(table)
    except BaseException:
        out.discard()
        raise
    out.commit()
    return {
        "tables": tables,
        "inputs": inputs,
        "missing_tables": missing,
        "totals": {"rows_read": sum(inputs.values()), "rows_written": sum(t["rows"] for t in tables.values())},
    }


def main(argv: list[str] | None = None) -> int:
    p = step_parser("model", "Merge zone + referentials -> epidemiological event tables")
    p.add_argument("--input", required=True, help="merge zone of the release")
    p.add_argument("--ingest", required=True, help="ingest zone of the release (referentials: IR_BEN_R, ...)")
    p.add_argument("--output", required=True, help="model zone of the release")
    add_config_args(p, model=True)

    def body(args, engine: Engine) -> dict:
        return run_model(engine, args.input, args.ingest, args.output,
                         IngestConfig.load(args.config), load_model_config(args.model_config), args.run_id)

    return run_step("model", p, body, argv, inputs=lambda a: {"merge": a.input, "ingest": a.ingest},
                    outputs=lambda a: {"model": a.output}, expected=(DeliveryError,))


if __name__ == "__main__":
    sys.exit(main())
