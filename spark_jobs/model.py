"""Model step: the epidemiological event tables and the medico-economic (cost) tables, from the merge
zone, the referentials and the clean PMSI zone's valuation tables.

    python -m spark_jobs.model --engine duckdb --input MERGE_ZONE --ingest INGEST_ZONE --clean CLEAN_ZONE \
        --output MODEL_ZONE --report REPORT.json --release R --run-id ID
    spark-submit spark_jobs/model.py --engine spark ...   (same arguments)

Tables, columns and types are declared in sql/model/model.yaml (the data dictionary,
docs/data-dictionary.md, is generated from it); each table is sql/model/<table>.sql, with the code
lists and thresholds of config/model.yaml (`model`, `costs`). Every table is keyed by the patient
pseudonym. Outputs are written aside and switched in at the end. docs/medico-economic-model.md
describes the cost tables.
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
from spark_jobs.steprun import STAY_DATES, StagedOutputs, StepError, register_partitioned, register_table, require_zone, run_step

log = logging.getLogger("snds.model")

MODEL_SCHEMA = sqlrender.SQL_DIR / "model" / "model.yaml"
#: Referential tables the model reads from the ingest zone (optional ones may be missing).
REFERENTIALS = ("IR_BEN_R", "IR_IMB_R", "IR_PHA_R", "REF_ATC_DDD", "KI_CCI_R")
#: The medico-economic model's tables, in build order.
COST_TABLES = ("costs_hospital_stays", "costs_outpatient", "costs_hospital_extras", "costs_patient_year")
#: Intermediate views (sql/model/_<view>.sql) that several cost tables read, built once before them.
COST_VIEWS = ("claims_in_stays", "valued_mco_stays")
#: Build order: a table may read the tables built before it.
BUILD_ORDER = ("stays", "deaths_by_source", "diagnoses", "procedures", "consults", "biology", "devices",
               "drug_dispensations", "cmuc", "patients", *COST_TABLES)


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


def cost_params(mcfg: dict, schema: dict) -> dict:
    """Template parameters of sql/model/costs_*.sql, checked against the declared patient-year columns."""
    costs = mcfg["costs"]
    stay_keys = {name: {"stay_table": spec["stay_table"], "stay_key": spec["stay_key"]}
                 for name, spec in mcfg["merge"]["pmsi_sources"].items()}
    missing = [s for s in ["MCO", *costs["billed_stays"]] if s not in stay_keys]
    if missing:
        raise StepError(f"config/model.yaml: costs name PMSI sources {missing} that merge.pmsi_sources lacks")
    declared = [c["name"] for c in schema["costs_patient_year"]["columns"]][3:]  # after patient_id, year, total
    expected = [*costs["outpatient_categories"], "other", *(f"hospital_{s.lower()}" for s in ["MCO", "ACE", *costs["billed_stays"]]),
                "hospital_extras"]
    if sorted(declared) != sorted(expected):
        raise StepError(f"sql/model/model.yaml: costs_patient_year columns {declared} do not match the cost categories "
                        f"of config/model.yaml {expected}")
    return {"costs": costs, "stay_keys": stay_keys, "patient_year_columns": declared}


def cost_input_tables(mcfg: dict) -> list[str]:
    """The clean PMSI tables the cost tables read."""
    costs = mcfg["costs"]
    return list(dict.fromkeys([mcfg["merge"]["pmsi_sources"]["MCO"]["stay_table"], costs["mco"]["valuation_table"],
                               costs["ace"]["visit_table"], costs["ace"]["valuation_table"],
                               *(s["table"] for s in costs["billed_stays"].values()), *(x["table"] for x in costs["extras"])]))


def run_model(engine: Engine, merge, ingest, output, icfg: IngestConfig, mcfg: dict,
              run_id: str, *, clean) -> dict:
    merge, ingest, output = lakefs.current(merge), lakefs.current(ingest), lakefs.LakePath(output)
    pmsi_zone = lakefs.current(lakefs.LakePath(clean) / "pmsi")
    for zone, step in ((merge, "merge"), (ingest, "ingest"), (pmsi_zone, "clean_pmsi")):
        require_zone(zone, step)
    schema = load_model_schema()
    params = dict(mcfg["model"])
    params["missing_before_year"] = params.pop("missing_date_before_year")
    params.update(cost_params(mcfg, schema))
    inputs = {"dcir": register_partitioned(engine, "dcir", merge / "dcir"),
              "pmsi": register_partitioned(engine, "pmsi", merge / "pmsi")}
    missing = []
    for table in REFERENTIALS:
        rows = register_table(engine, ingest, table, icfg)
        inputs[table] = rows or 0
        if rows is None:
            missing.append(table)
    visits = mcfg["costs"]["ace"]["visit_table"]  # a chaining table: the clean step added its dates
    for table in cost_input_tables(mcfg):
        rows = register_table(engine, pmsi_zone, table, icfg, retype=False,
                              added=STAY_DATES if table == visits else None)
        inputs[table] = rows or 0
        if rows is None:
            missing.append(table)
    out = StagedOutputs(output, run_id)
    tables = {}
    try:
        for table in BUILD_ORDER:
            started = time.monotonic()
            if table == COST_TABLES[0]:  # timed with the first cost table
                for view in COST_VIEWS:
                    engine.create_view(view, sqlrender.render(f"model/_{view}.sql", **params), materialize=True)
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
        for table in (*BUILD_ORDER, *COST_VIEWS):
            engine.drop_view(table)
    except BaseException:
        out.discard()
        raise
    out.commit()
    return {
        "tables": tables,
        "medico_economic_seconds": round(sum(tables[t]["seconds"] for t in COST_TABLES), 3),
        "inputs": inputs,
        "missing_tables": missing,
        "totals": {"rows_read": sum(inputs.values()), "rows_written": sum(t["rows"] for t in tables.values())},
    }


def main(argv: list[str] | None = None) -> int:
    p = step_parser("model", "Merge zone + referentials -> epidemiological event tables")
    p.add_argument("--input", required=True, help="merge zone of the release")
    p.add_argument("--ingest", required=True, help="ingest zone of the release (referentials: IR_BEN_R, ...)")
    p.add_argument("--clean", required=True, help="clean zone of the release (PMSI valuation tables for the costs)")
    p.add_argument("--output", required=True, help="model zone of the release")
    add_config_args(p, model=True)

    def body(args, engine: Engine) -> dict:
        return run_model(engine, args.input, args.ingest, args.output,
                         IngestConfig.load(args.config), load_model_config(args.model_config), args.run_id,
                         clean=args.clean)

    return run_step("model", p, body, argv, inputs=lambda a: {"merge": a.input, "ingest": a.ingest, "clean": a.clean},
                    outputs=lambda a: {"model": a.output}, expected=(DeliveryError,))


if __name__ == "__main__":
    sys.exit(main())
