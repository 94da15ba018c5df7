"""Clean step: the cleaning rules of RULES.md on one source family, as named SQL units.

    python -m spark_jobs.clean --engine duckdb --source dcir --input INGEST_ZONE --output CLEAN_ZONE/dcir \
        --report REPORT.json --release R --run-id ID
    spark-submit spark_jobs/clean.py --engine spark --source pmsi ...   (same arguments)

`--source dcir`: line rules (sql/clean/dcir/rules/), then régularisations netted into one line per
claim, detail tables following their line. `--source pmsi`: stays of MCO/SSR/HAD built from their B
and C rows, stay rules (sql/clean/pmsi/rules/), every table's rows following their stay, stay dates
reconstructed. Code lists and thresholds come from config/clean.yaml.

Output: the same tables and columns (PMSI chaining tables gain `stay_start`, `stay_end`), minus the
removed rows, written aside and switched in at the end. Per table: rows in = rows out + rows removed
by each named rule, or the step fails; the report gives the counts per rule and table.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path

import yaml

from spark_jobs import sqlrender
from spark_jobs.bundle import resource
from spark_jobs.delivery import CONFIG_DIR, DeliveryError, IngestConfig
from spark_jobs import lakefs
from spark_jobs.engines import Engine
from spark_jobs.stepargs import add_config_args, step_parser
from spark_jobs.lakefs import LakePath
from spark_jobs.steprun import (AccountingError, StagedOutputs, StepError, parquet_files, parquet_footer, register_table,
                               run_step, schema_columns)

log = logging.getLogger("snds.clean")

SOURCES = ("dcir", "pmsi")


def load_clean_config(path: str | Path | None = None) -> dict:
    """config/clean.yaml, checked: every rule named there has its SQL file and its settings."""
    path = resource(path) if path else CONFIG_DIR / "clean.yaml"
    try:
        with open(path, encoding="utf-8") as fh:
            cfg = yaml.safe_load(fh)
    except OSError as exc:
        raise StepError(f"{path}: cannot read the cleaning configuration ({exc.strerror})") from None
    for family in SOURCES:
        if family not in (cfg or {}):
            raise StepError(f"{path}: missing section `{family}`")
    for name in cfg["dcir"]["line_rules"]:
        if not (sqlrender.SQL_DIR / "clean" / "dcir" / "rules" / f"{name}.sql").exists():
            raise StepError(f"{path}: dcir.line_rules.{name}: no SQL file sql/clean/dcir/rules/{name}.sql")
    for src, spec in cfg["pmsi"]["sources"].items():
        for name in spec["rules"]:
            if name not in cfg["pmsi"]["rules"]:
                raise StepError(f"{path}: pmsi.sources.{src}.rules: {name} has no settings under pmsi.rules")
            if not (sqlrender.SQL_DIR / "clean" / "pmsi" / "rules" / f"{name}.sql").exists():
                raise StepError(f"{path}: pmsi.sources.{src}.rules: no SQL file sql/clean/pmsi/rules/{name}.sql")
        for name in spec.get("rule_options", {}):
            if name not in spec["rules"]:
                raise StepError(f"{path}: pmsi.sources.{src}.rule_options.{name}: not one of the source's rules")
    return cfg


def _fate_counts(engine: Engine, view: str) -> tuple[int, dict[str, int]]:
    kept, removed = 0, {}
    for rule, n in engine.rows(f"SELECT _removed_by, count(*) FROM {view} GROUP BY _removed_by"):
        if rule is None:
            kept = int(n)
        else:
            removed[rule] = int(n)
    return kept, dict(sorted(removed.items()))


class Attrition:
    """Rows in, out and removed per rule, per table; checked against what was written."""

    def __init__(self):
        self.tables: dict[str, dict] = {}

    def record(self, table: str, rows_in: int, kept: int, removed: dict[str, int], written: int, seconds: float):
        if written != kept or rows_in != kept + sum(removed.values()):
            raise AccountingError(
                f"{table}: {rows_in} rows in, {kept} kept and {sum(removed.values())} removed by rule, "
                f"but {written} rows were written"
            )
        self.tables[table] = {"rows_read": rows_in, "rows": kept, "dropped": sum(removed.values()),
                              "dropped_by_rule": removed, "seconds": round(seconds, 3)}
        log.info("clean %s: %d rows in, %d kept, %s (%.1f s)", table, rows_in, kept,
                 ", ".join(f"{r} {n}" for r, n in removed.items()) or "none removed", seconds)

    def sections(self) -> dict:
        by_rule: dict[str, dict[str, int]] = {}
        for table, t in sorted(self.tables.items()):
            for rule, n in t["dropped_by_rule"].items():
                by_rule.setdefault(rule, {})[table] = n
        return {
            "tables": self.tables,
            "dropped_by_rule": {r: by_rule[r] for r in sorted(by_rule)},
            "totals": {
                "rows_read": sum(t["rows_read"] for t in self.tables.values()),
                "rows_written": sum(t["rows"] for t in self.tables.values()),
                "dropped_by_rule": sum(t["dropped"] for t in self.tables.values()),
            },
        }


def _column_names(icfg: IngestConfig, table: str) -> list[str]:
    return [c for c, _ in schema_columns(icfg, table)]


def clean_dcir(engine: Engine, ingest, out: StagedOutputs, icfg: IngestConfig, ccfg: dict) -> dict:
    cfg = ccfg["dcir"]
    attrition = Attrition()
    rows_in = {t: register_table(engine, ingest, t, icfg) or 0 for t in ["ER_PRS_F", *cfg["detail_tables"]]}
    rules = []
    for name, spec in cfg["line_rules"].items():
        spec = dict(spec or {})
        if spec.pop("enabled", True):
            rules.append({"name": name, "reads": spec.pop("reads", "ER_PRS_F"), **spec})
    missing_inputs = dcir_rule_inputs(ingest, rules, rows_in)
    for entry in missing_inputs:
        log.warning("clean_dcir: %s", entry["message"])
    detail_rules: dict[str, list[dict]] = {}
    for rule in rules:
        if rule["reads"] != "ER_PRS_F":
            if rule["reads"] not in cfg["detail_tables"]:
                raise StepError(f"clean.yaml: dcir.line_rules.{rule['name']}: reads: {rule['reads']} is not a detail table")
            detail_rules.setdefault(rule["reads"], []).append(rule)
    params = {"join_keys": cfg["join_keys"], "amount_columns": cfg["amount_columns"],
              "regularisation": cfg["regularisation"], "line_columns": _column_names(icfg, "ER_PRS_F")}
    started = time.monotonic()
    engine.create_view("dcir_line_rules", sqlrender.render("clean/dcir/dcir_line_rules.sql", rules=rules,
                                                           detail_rules=detail_rules, **params))
    engine.create_view("dcir_lines", sqlrender.render("clean/dcir/dcir_regularisation.sql", **params), materialize=True)
    kept, removed = _fate_counts(engine, "dcir_lines")
    ident = sqlrender.ident
    engine.create_view("ER_PRS_F__clean", sqlrender.render(
        "clean/dcir/clean_output.sql", source_view="dcir_lines", columns=params["line_columns"],
        replaced={c: ident(f"_net_{c}") for c in cfg["regularisation"]["summed"]},
        amount_columns=cfg["amount_columns"]))
    written = out.write_view(engine, "ER_PRS_F", "ER_PRS_F__clean", params["line_columns"], cfg["join_keys"])
    engine.drop_view("ER_PRS_F__clean")
    attrition.record("ER_PRS_F", rows_in["ER_PRS_F"], kept, removed, written, time.monotonic() - started)
    for table, spec in cfg["detail_tables"].items():
        started = time.monotonic()
        columns = _column_names(icfg, table)
        others = [c for c in columns if c not in cfg["join_keys"] and c != spec["code"]]
        detail = {**params, "table": table, "code": spec["code"], "quantity": spec.get("quantity"),
                  "order_columns": others}
        engine.create_view(f"{table}_rows", sqlrender.render("clean/dcir/dcir_detail_rows.sql", **detail),
                           materialize=True)
        kept, removed = _fate_counts(engine, f"{table}_rows")
        replaced = {k: ident(f"_g_{k}") for k in cfg["join_keys"]}
        if spec.get("quantity"):
            replaced[spec["quantity"]] = "CAST(_net AS BIGINT)"
        engine.create_view(f"{table}__clean", sqlrender.render(
            "clean/dcir/clean_output.sql", source_view=f"{table}_rows", columns=columns, replaced=replaced,
            amount_columns=cfg["amount_columns"]))
        written = out.write_view(engine, table, f"{table}__clean", columns, [*cfg["join_keys"], spec["code"], *others])
        attrition.record(table, rows_in[table], kept, removed, written, time.monotonic() - started)
        engine.drop_view(f"{table}__clean")
        engine.drop_view(f"{table}_rows")
    engine.drop_view("dcir_lines")
    sections = attrition.sections()
    sections["missing_rule_inputs"] = missing_inputs
    return sections


def dcir_rule_inputs(zone, rules: list[dict], rows_in: dict[str, int]) -> list[dict]:
    """Line rules whose columns the delivery lacks. A column missing from a delivered table means the
    rule cannot be evaluated (not_evaluated: a blocking check of the clean gate, naming the table and
    columns); a detail table not delivered at all means the rule finds no line to remove (partial: a
    warning). Lines with a NULL value are kept by every line rule, so nothing is removed silently."""
    if not parquet_files(LakePath(zone) / "ER_PRS_F"):
        return []  # no DCIR in this delivery: nothing to evaluate
    entries = []
    for rule in rules:
        table = rule["reads"]
        columns = [k for k in rule if k.isupper()]
        by_year = delivered_columns(zone, table)
        if not by_year:
            entries.append({"rule": rule["name"], "source": "DCIR", "table": table, "year": None, "columns": columns,
                            "effect": "partial",
                            "message": f"{rule['name']} (DCIR): {table} is not in the delivery: the rule removes no line"})
            continue
        delivered = set().union(*by_year.values())
        missing = [c for c in columns if c not in delivered]
        if missing:
            entries.append({"rule": rule["name"], "source": "DCIR", "table": table, "year": None, "columns": missing,
                            "effect": "not_evaluated",
                            "message": f"{rule['name']} (DCIR): {table} lacks {', '.join(missing)}: not evaluated"})
    return entries


def delivered_columns(zone, table: str) -> dict[int | None, set[str]]:
    """The columns each delivered year of a table holds (from the Parquet footers ingest wrote): a
    table of one year may lack codes another year has."""
    found: dict[int | None, set[str]] = {}
    for path in parquet_files(LakePath(zone) / table):
        m = re.search(r"/year=(\d+)/", str(path))
        found.setdefault(int(m.group(1)) if m else None, set()).update(parquet_footer(path).schema.names)
    return found


def pmsi_rule_inputs(zone, source: str, spec: dict, rule: dict, b_columns, icfg) -> tuple[dict, list[dict]]:
    """What a PMSI stay rule can evaluate with the columns delivered, year by year: the rule with
    `absent` ({code: [years]}: codes a year's table lacks, not required that year) and
    `unevaluable_years` (years whose tables lack every column the rule reads: the rule keeps those
    stays), and the report's `missing_rule_inputs` entries (partial: a warning; not evaluated: a
    blocking check of the clean gate). A code that a table lacks never counts as a bad code."""
    if "codes" in rule:
        table, columns, partial_ok = spec["chaining_table"], list(rule["codes"]), True
    elif "column" in rule:
        table = spec["stay_table"] if rule["column"] in b_columns else spec["chaining_table"]
        columns, partial_ok = [rule["column"]], False
    else:
        return {**rule, "absent": {}, "unevaluable_years": []}, []
    by_year = delivered_columns(zone, table)
    absent = {c: sorted(y for y, cols in by_year.items() if c not in cols) for c in columns}
    absent = {c: years for c, years in absent.items() if years}
    unevaluable = sorted(y for y, cols in by_year.items() if not any(c in cols for c in columns))
    entries = []
    for year in sorted(by_year):
        missing = [c for c in columns if year in absent.get(c, [])]
        if not missing:
            continue
        effect = "partial" if partial_ok and year not in unevaluable else "not_evaluated"
        what = (f"evaluated without {', '.join(missing)}" if effect == "partial"
                else "not evaluated (its stays are kept)")
        entries.append({"rule": rule["name"], "source": source, "table": table, "year": year, "columns": missing,
                        "effect": effect,
                        "message": f"{rule['name']} ({source}): {table} of {year} lacks {', '.join(missing)}: {what}"})
    return {**rule, "absent": absent, "unevaluable_years": unevaluable}, entries


def clean_pmsi(engine: Engine, ingest, out: StagedOutputs, icfg: IngestConfig, ccfg: dict) -> dict:
    cfg = ccfg["pmsi"]
    attrition = Attrition()
    stays: dict[str, dict[str, int]] = {}
    missing_inputs: list[dict] = []
    for name, spec in cfg["sources"].items():
        # ACE visits have one table for both roles (T_MCOaaCSTC): each table is read and written once.
        tables = list(dict.fromkeys([spec["stay_table"], spec["chaining_table"], *spec["sub_tables"]]))
        rows_in = {t: register_table(engine, ingest, t, icfg) or 0 for t in tables}
        b_columns = _column_names(icfg, spec["stay_table"])
        c_columns = _column_names(icfg, spec["chaining_table"])
        source = {**spec, "name": name}
        # A source may adjust a shared rule (`rule_options`), e.g. its own chaining codes.
        rules = [{"name": r, **cfg["rules"][r], **spec.get("rule_options", {}).get(r, {})} for r in spec["rules"]]
        # A rule evaluates what the delivered tables hold (docs/clean-merge-model.md#missing-columns).
        checked = [pmsi_rule_inputs(ingest, name, spec, rule, b_columns, icfg) for rule in rules]
        rules = [rule for rule, _ in checked]
        for _, entries in checked:
            for entry in entries:
                log.warning("clean_pmsi: %s", entry["message"])
            missing_inputs += entries
        started = time.monotonic()
        engine.create_view(f"stays_{name}", sqlrender.render(
            "clean/pmsi/pmsi_stays.sql", source=source, rules=rules, b_columns=b_columns, c_columns=c_columns,
            missing_before_year=cfg["missing_date_before_year"]), materialize=True)
        _, stays[name] = _fate_counts(engine, f"stays_{name}")
        for table in tables:
            columns = _column_names(icfg, table)
            key = ["year", *spec["stay_key"]]
            with_dates = table == spec["chaining_table"]
            order = [c for c in columns if c not in key]
            engine.create_view(f"{table}_rows", sqlrender.render(
                "clean/pmsi/pmsi_table_rows.sql", table=table, source=spec, columns=columns, with_dates=with_dates,
                stays_view=f"stays_{name}"), materialize=True)
            kept, removed = _fate_counts(engine, f"{table}_rows")
            written = out.write_view(engine, table, f"{table}_rows",
                                     columns + (["stay_start", "stay_end"] if with_dates else []),
                                     key + order, where="_removed_by IS NULL")
            attrition.record(table, rows_in[table], kept, removed, written, time.monotonic() - started)
            engine.drop_view(f"{table}_rows")
            started = time.monotonic()
        engine.drop_view(f"stays_{name}")
    sections = attrition.sections()
    by_rule: dict[str, dict[str, int]] = {}
    for name, removed in stays.items():
        for rule, n in removed.items():
            by_rule.setdefault(rule, {})[name] = n
    sections["stays_removed_by_rule"] = {r: by_rule[r] for r in sorted(by_rule)}
    sections["missing_rule_inputs"] = missing_inputs
    return sections


def run_clean(engine: Engine, source: str, ingest, output, icfg: IngestConfig, ccfg: dict,
              run_id: str) -> dict:
    """Clean one source family from the ingest zone into `output` (local paths or s3:// URIs); returns
    the report sections."""
    ingest = lakefs.current(ingest)
    out = StagedOutputs(output, run_id)
    try:
        sections = (clean_dcir if source == "dcir" else clean_pmsi)(engine, ingest, out, icfg, ccfg)
    except BaseException:
        out.discard()
        raise
    out.commit()
    sections["source"] = source
    sections["rules_applied"] = sorted(sections["dropped_by_rule"])
    return sections


def main(argv: list[str] | None = None) -> int:
    p = step_parser("clean", "Cleaning rules of RULES.md on the ingest zone of one source family")
    p.add_argument("--source", required=True, choices=SOURCES, help="source family to clean")
    p.add_argument("--input", required=True, help="ingest zone of the release")
    p.add_argument("--output", required=True, help="clean zone of this source family")
    add_config_args(p, clean=True)

    def body(args, engine: Engine) -> dict:
        icfg = IngestConfig.load(args.config)
        ccfg = load_clean_config(args.clean_config)
        return run_clean(engine, args.source, args.input, args.output, icfg, ccfg,
                         args.run_id)

    return run_step(f"clean_{p.parse_known_args(argv)[0].source}", p, body, argv,
                    inputs=lambda a: {"ingest": a.input}, outputs=lambda a: {"clean": a.output},
                    expected=(DeliveryError,))


if __name__ == "__main__":
    sys.exit(main())
