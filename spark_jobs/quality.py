"""Quality gates: the checks declared in sql/quality/checks.yaml, run on a release's zones, stop a bad
release before anyone can query it.

    python -m spark_jobs.quality --stage clean --engine duckdb --run-dir RUN_DIR --ingest INGEST_ZONE \
        --quarantine QUARANTINE_ZONE --clean CLEAN_ZONE --delivery DELIVERY --report RUN_DIR/steps/gate_clean.json \
        --release R --run-id ID
    python -m spark_jobs.quality --stage model ... --merge MERGE_ZONE --model MODEL_ZONE --truth TRUTH_ZONE \
        --lake LAKE_ROOT --report RUN_DIR/steps/gate_model.json
    spark-submit spark_jobs/quality.py --engine spark ...   (same arguments)

The release DAG runs the `clean` gate after the cleaning steps (before merge) and the `model` gate after
the model (before the feasibility report and publish). Every check is one SQL template
(sql/quality/<kind>.sql) rendered with the parameters the YAML declares; the template returns one row,
(observed, total, example), judged against the check's threshold. The step report
(`steps/gate_<stage>.json`) lists every check with its result; a failed blocking check fails the step
(exit 1) after the report is written, so nothing downstream runs and nothing is published. Warnings
are recorded only. Reports carry counts and the names of files, tables and rules, never row values.

What a check reads:
- zones: tables of the ingest, clean and model zones, as views `<zone>__<table>`;
- the run's step reports (`<run dir>/steps/*.json`) and the Parquet footers, for the row accounting;
- the previous published release's manifest (spark_jobs.publish), for the drift check;
- a synthetic delivery's truth: `_truth/manifest.json` (counts) and the truth event tables that
  ingest pseudonymised into the truth zone; real deliveries have neither and those checks are skipped.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
import re
import sys
from pathlib import Path

import yaml

from spark_jobs import lakefs, sqlrender
from spark_jobs.delivery import DeliveryError, IngestConfig
from spark_jobs.engines import Engine
from spark_jobs.lakefs import LakePath
from spark_jobs.model import load_model_schema
from spark_jobs.report import step_reports, truth_check
from spark_jobs.stepargs import add_config_args, step_parser
from spark_jobs.steprun import StepError, parquet_files, parquet_footer, parquet_rows, run_step

log = logging.getLogger("snds.quality")

CHECKS_FILE = sqlrender.SQL_DIR / "quality" / "checks.yaml"
STAGES = ("clean", "model")
SEVERITIES = ("blocking", "warning")
#: Check kinds: each is sql/quality/<kind>.sql, except truth_attrition (the summary's truth check of the
#: step reports against the generator's manifest, spark_jobs.report.truth_check).
KINDS = ("accounting", "unique", "references", "pattern", "null_rate", "date_window", "within_life", "pseudonyms",
         "drift", "truth_events", "truth_attrition", "rule_inputs")
#: Kinds that read one table (`table`, or once per entry of `tables`).
TABLE_KINDS = ("unique", "references", "pattern", "null_rate", "date_window", "within_life", "truth_events")
#: The zones each stage's checks may read.
STAGE_ZONES = {"clean": ("ingest", "clean"), "model": ("model",)}
_MONTH_RELEASE = re.compile(r"^(\d{4})-(\d{2})$")


class GateFailed(StepError):
    """A blocking check failed: the gate's report lists every check."""


# --- the declared checks ---------------------------------------------------------------------------
def load_checks(path: Path | str | None = None) -> dict:
    """sql/quality/checks.yaml, validated: {settings, clean: [checks], model: [checks]}. A malformed
    entry is a StepError naming the file, the check and the field."""
    path = Path(path or CHECKS_FILE)
    with open(path, encoding="utf-8") as fh:
        spec = yaml.safe_load(fh) or {}
    unknown = sorted(set(spec) - {"settings", *STAGES})
    if unknown:
        raise StepError(f"{path}: unknown section(s) {unknown}; expected settings, {', '.join(STAGES)}")
    for stage in STAGES:
        seen = set()
        for i, check in enumerate(spec.get(stage) or []):
            where = f"{path}: {stage}[{i}] ({check.get('name', '?')})"
            for key in ("name", "kind", "severity", "description"):
                if not check.get(key):
                    raise StepError(f"{where}: '{key}' missing")
            if check["name"] in seen:
                raise StepError(f"{where}: name {check['name']!r} used twice in {stage}")
            seen.add(check["name"])
            if check["kind"] not in KINDS:
                raise StepError(f"{where}: kind {check['kind']!r} is not one of {', '.join(KINDS)}")
            if check["severity"] not in SEVERITIES:
                raise StepError(f"{where}: severity {check['severity']!r} is not blocking or warning")
            if check["kind"] in TABLE_KINDS and not (check.get("table") or check.get("tables")):
                raise StepError(f"{where}: 'table' or 'tables' missing (kind {check['kind']})")
            zone = check.get("zone", STAGE_ZONES[stage][-1])
            if zone not in STAGE_ZONES[stage]:
                raise StepError(f"{where}: zone {zone!r} is not read at the {stage} stage")
            if check["kind"] == "rule_inputs" and check.get("effect") not in ("partial", "not_evaluated"):
                raise StepError(f"{where}: effect must be partial or not_evaluated (kind rule_inputs)")
            if "max_rate" in check and not 0 <= float(check["max_rate"]) <= 1:
                raise StepError(f"{where}: max_rate must be between 0 and 1")
    return spec


def release_window(release: str, start: str, today: dt.date | None = None) -> tuple[str, str]:
    """(first, last) day of the dates a release may hold: from the configured start to the end of the
    release month for YYYY-MM releases, to the run date otherwise."""
    m = _MONTH_RELEASE.match(release)
    if m:
        year, month = int(m.group(1)), int(m.group(2))
        end = dt.date(year, month, calendar.monthrange(year, month)[1])
    else:
        end = today or dt.datetime.now(dt.timezone.utc).date()
    return str(dt.date.fromisoformat(str(start))), end.isoformat()


# --- the gate ----------------------------------------------------------------------------------------
class Gate:
    """The checks of one stage on one release: registers the views the checks need (lazily), renders
    and runs each check, judges it."""

    def __init__(self, engine: Engine, stage: str, *, zones: dict, run_dir, icfg: IngestConfig, release: str,
                 spec: dict, delivery=None, truth=None, lake=None, today: dt.date | None = None):
        self.engine, self.stage, self.icfg, self.release = engine, stage, icfg, release
        self.zones = {name: lakefs.current(z) for name, z in zones.items() if z}
        self.run_dir = LakePath(run_dir)
        self.settings = spec.get("settings") or {}
        self.checks = spec.get(stage) or []
        self.delivery = LakePath(delivery) if delivery else None
        self.truth = lakefs.current(truth) if truth else None
        self.lake = LakePath(lake) if lake else None
        self.window = release_window(release, self.settings.get("release_window_start", "2006-01-01"), today)
        self.reports = step_reports(self.run_dir)
        self._views: dict[tuple[str, str], str | None] = {}
        self._families: dict[str, list[LakePath]] = {}

    # -- tables
    def families(self, zone: str) -> list[LakePath]:
        """The current locations holding a zone's tables: the clean zone has a dcir/ and a pmsi/ family,
        each written (and, on S3, versioned) by its own step. Resolved once (a pointer read on S3)."""
        if zone not in self._families:
            root = self.zones.get(zone)
            self._families[zone] = ([] if root is None else [root] if zone != "clean"
                                    else [lakefs.current(root / family) for family in ("dcir", "pmsi")])
        return self._families[zone]

    def table_dir(self, zone: str, table: str) -> LakePath | None:
        """Where a zone keeps a table, or None if the release has no such table."""
        return next((f / table for f in self.families(zone) if parquet_files(f / table)), None)

    def view(self, zone: str, table: str) -> str | None:
        """The view over a zone's table (registered on first use), or None if the release lacks it."""
        key = (zone, table)
        if key not in self._views:
            directory = self.table_dir(zone, table)
            name = f"{zone}__{table}"
            if directory is not None:
                self.engine.read_parquet(name, directory)
            self._views[key] = name if directory is not None else None
        return self._views[key]

    def zone_tables(self, zone: str) -> list[str]:
        root = self.zones.get(zone)
        if root is None:
            return []
        if zone == "model":
            return list(load_model_schema())
        return sorted({e.name for f in self.families(zone) for e, is_dir in lakefs.list_entries(f) if is_dir
                       and not e.name.startswith(("_", "."))})

    # -- running
    def run(self) -> dict:
        results = []
        for check in self.checks:
            tables = check.get("tables") or ([check["table"]] if check.get("table") else [None])
            for table in tables:
                name = f"{check['name']}:{table}" if check.get("tables") else check["name"]
                result = self.evaluate(check, name, table)
                results.append(result)
                log.info("gate %s: %-44s %-8s %s", self.stage, name, result["status"].upper(), result["message"])
        failed = [r["name"] for r in results if r["status"] == "fail" and r["severity"] == "blocking"]
        totals = {"checks": len(results), "passed": sum(r["status"] == "pass" for r in results),
                  "failed": len(failed),
                  "warnings": sum(r["status"] == "fail" and r["severity"] == "warning" for r in results),
                  "skipped": sum(r["status"] == "skipped" for r in results)}
        sections = {"stage": self.stage, "release_window": list(self.window), "checks": results, "totals": totals}
        if failed:
            raise GateFailed(f"quality gate {self.stage} failed: {len(failed)} blocking check(s): {', '.join(failed)}",
                             sections)
        return sections

    def evaluate(self, check: dict, name: str, table: str | None) -> dict:
        result = {"name": name, "kind": check["kind"], "table": table, "severity": check["severity"],
                  "description": check["description"]}
        measured = getattr(self, f"_measure_{check['kind']}")(check, table)
        if isinstance(measured, str):
            return {**result, "status": "skipped", "observed": None, "total": None, "threshold": None,
                    "message": measured}
        observed, total, example = measured
        observed, total = int(observed or 0), int(total or 0)
        if "max_rate" in check:
            limit = float(check["max_rate"]) * total
            threshold = {"max_rate": float(check["max_rate"])}
        else:
            limit = float(check.get("threshold", 0))
            threshold = {"threshold": limit}
        passed = observed <= limit
        message = f"{observed:,} of {total:,}" + (f" (first: {example})" if example and not passed else "")
        return {**result, "status": "pass" if passed else "fail", "observed": observed, "total": total,
                "threshold": threshold, "message": message}

    def _sql(self, kind: str, **params) -> tuple:
        (row,) = self.engine.rows(sqlrender.render(f"quality/{kind}.sql", **params))
        return tuple(row)

    def _table_view(self, check: dict, table: str) -> tuple[str | None, str | None]:
        """(view, None), or (None, why the check is skipped) when the release lacks the table."""
        zone = check.get("zone", STAGE_ZONES[self.stage][-1])
        view = self.view(zone, table)
        return (view, None) if view else (None, f"{table} is not in the {zone} zone of this release")

    # -- one method per kind: returns (observed, total, example) or the reason the check is skipped
    def _measure_table(self, check, table):
        """The kinds that read one table and take their parameters from the check as declared."""
        view, skipped = self._table_view(check, table)
        if skipped:
            return skipped
        return self._sql(check["kind"], view=view, column=check.get("column"), columns=check.get("columns"),
                         where=check.get("where"), pattern=check.get("pattern"), window_start=self.window[0],
                         window_end=self.window[1], start_exempt=self._start_exempt(check, view))

    def _start_exempt(self, check, view) -> str | None:
        """`start_exempt: {COLUMN: [values]}` as SQL, for the tables that have the column (a table
        without it, e.g. consults, has no hospital rows to exempt)."""
        spec = check.get("start_exempt") or {}
        columns = set(self.engine.columns(view)) if spec else set()
        parts = [f"{sqlrender.ident(c)} IN ({sqlrender.sql_list(v)})" for c, v in spec.items() if c in columns]
        return " OR ".join(parts) or None

    _measure_unique = _measure_pattern = _measure_null_rate = _measure_date_window = _measure_table

    def _measure_references(self, check, table):
        view, skipped = self._table_view(check, table)
        if skipped:
            return skipped
        parent_zone = check.get("parent_zone", check.get("zone", STAGE_ZONES[self.stage][-1]))
        parent = self.view(parent_zone, check["parent"])
        if parent is None:
            return f"{check['parent']} is not in the {parent_zone} zone of this release"
        return self._sql("references", view=view, parent_view=parent, columns=check["columns"])

    def _measure_within_life(self, check, table):
        if self.view("model", "patients") is None:
            return "no patients table in the model"
        self.engine.create_view("patients", "SELECT * FROM model__patients")
        view, skipped = self._table_view(check, table)
        return skipped or self._sql("within_life", view=view, column=check["column"])

    def _measure_pseudonyms(self, check, table):
        zone = check.get("zone", STAGE_ZONES[self.stage][-1])
        targets = []
        for t in check.get("tables") and [table] or self.zone_tables(zone):
            view = self.view(zone, t)
            if view is None:
                continue
            columns = ["patient_id"] if zone == "model" else [
                c for c in self.engine.columns(view) if self.icfg.is_identifier(t, c)]
            targets += [{"view": view, "table": t, "column": c} for c in columns]
        if not targets:
            return f"no identifier column in the {zone} zone"
        return self._sql("pseudonyms", targets=targets, pattern=self.settings["pseudonym_pattern"])

    def _measure_accounting(self, check, table):
        items = self.accounting_items()
        if not items:
            return "no step report of this run to reconcile"
        self.engine.register_rows("accounting_items", ["step", "item", "rows_in", "rows_out", "set_aside",
                                                       "rows_found", "rows_upstream"],
                                  [tuple(None if v is None else str(v) for v in item) for item in items])
        return self._sql("accounting")

    def _measure_drift(self, check, table):
        if self.lake is None:
            return "no lake given: no previous release to compare with"
        from spark_jobs.publish import previous_release_manifest

        previous = previous_release_manifest(self.lake, self.release)
        if previous is None:
            return "no earlier published release"
        model = self.reports.get("model", {}).get("tables", {})
        items = [(t, model[t]["rows"], info["rows"]) for t, info in sorted(previous["tables"].items())
                 if t in model and info.get("rows")]
        if not items:
            return f"no table in common with release {previous['release']}"
        self.engine.register_rows("drift_items", ["table_name", "row_count", "previous_rows"],
                                  [tuple(map(str, i)) for i in items])
        observed, total, example = self._sql("drift", tolerance=float(check["tolerance"]))
        return observed, total, example and f"{example} (vs release {previous['release']})"

    def _measure_truth_events(self, check, table):
        if self.truth is None or not parquet_files(self.truth / table):
            return "no generator's truth for this table (not a synthetic delivery)"
        view, skipped = self._table_view(check, table)
        if skipped:
            return skipped
        truth_view = f"truth__{table}"
        self.engine.read_parquet(truth_view, self.truth / table)
        columns = [c for c in self.engine.columns(truth_view) if c != "_lineno"]
        return self._sql("truth_events", view=view, truth_view=truth_view, columns=columns)

    def _measure_truth_attrition(self, check, table):
        manifest = self.delivery / "_truth" / "manifest.json" if self.delivery else None
        if manifest is None or not lakefs.is_file(manifest):
            return "no generator's truth (not a synthetic delivery)"
        steps = {s: self.reports[s] for s in ("ingest", "clean_dcir", "clean_pmsi") if s in self.reports}
        check = truth_check(steps, lakefs.read_json(manifest))
        if check["status"] == "not_checked":
            return f"not checked: {check['reason']}"
        differences = check["differences"]
        return len(differences), check["files"], differences[0] if differences else None

    def _measure_rule_inputs(self, check, table):
        """Cleaning rules whose input columns the delivery lacks (the clean reports'
        `missing_rule_inputs`), with the given `effect` (partial | not_evaluated)."""
        reports = [self.reports[s] for s in ("clean_dcir", "clean_pmsi") if s in self.reports]
        if not reports:
            return "no clean report in this run"
        items = [i for r in reports for i in r.get("missing_rule_inputs") or [] if i["effect"] == check["effect"]]
        rules = sum(len(r.get("rules_applied") or []) for r in reports)
        return len(items), max(rules, len(items)), items[0]["message"] if items else None

    # -- row accounting
    def accounting_items(self) -> list[tuple]:
        """(step, item, rows_in, rows_out, set_aside, rows_found, rows_upstream) for every file and table
        the run's reports count, with the rows found in the zones' Parquet footers."""
        items, r = [], self.reports
        footers = lambda zone, t: parquet_rows(d) if (d := self.table_dir(zone, t)) is not None else 0  # noqa: E731
        if self.stage == "clean":
            ingest = r.get("ingest")
            if ingest and ingest.get("status") == "success":
                for t, info in sorted(ingest["tables"].items()):
                    for f in info["files"]:
                        set_aside = sum(f["quarantine_reasons"].values()) + sum(f["dropped_by_rule"].values())
                        items.append(("ingest", f["file"], f["rows_read"], f["rows"], set_aside, None, None))
                    items.append(("ingest", t, info["rows_read"], info["rows"], info["quarantined"] + info["dropped"],
                                  footers("ingest", t), None))
                    if info["quarantined"] and "quarantine" in self.zones:
                        found = parquet_rows(self.zones["quarantine"] / t)
                        items.append(("ingest", f"{t} quarantine", info["quarantined"], info["quarantined"], 0, found,
                                      None))
            for step in ("clean_dcir", "clean_pmsi"):
                report = r.get(step)
                if report and report.get("status") == "success":
                    for t, info in sorted(report["tables"].items()):
                        items.append((step, t, info["rows_read"], info["rows"], sum(info["dropped_by_rule"].values()),
                                      footers("clean", t), footers("ingest", t)))
        else:
            merge = r.get("merge")
            if merge and merge.get("status") == "success":
                dcir = merge["tables"]["dcir"]
                upstream = sum(footers("clean", t) for t in dcir["inputs"]) if "clean" in self.zones else None
                items.append(("merge", "dcir", sum(dcir["inputs"].values()), dcir["rows"], 0,
                              parquet_rows(self.zones["merge"] / "dcir") if "merge" in self.zones else None, upstream))
                pmsi = merge["tables"]["pmsi"]
                items.append(("merge", "pmsi", pmsi["rows"], pmsi["rows"], 0,
                              parquet_rows(self.zones["merge"] / "pmsi") if "merge" in self.zones else None, None))
            model = r.get("model")
            if model and model.get("status") == "success":
                for t, info in sorted(model["tables"].items()):
                    items.append(("model", t, info["rows"], info["rows"], 0, footers("model", t), None))
        return items


def run_gate(engine: Engine, stage: str, *, zones: dict, run_dir, icfg: IngestConfig, release: str,
             checks=None, delivery=None, truth=None, lake=None, today: dt.date | None = None) -> dict:
    """Run the checks of `stage` (clean or model); returns the report sections (stage, release_window,
    checks, totals), or raises GateFailed (carrying the same sections) when a blocking check fails."""
    if stage not in STAGES:
        raise StepError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    spec = checks if isinstance(checks, dict) else load_checks(checks)
    gate = Gate(engine, stage, zones=zones, run_dir=run_dir, icfg=icfg, release=release, spec=spec,
                delivery=delivery, truth=truth, lake=lake, today=today)
    return gate.run()


def main(argv: list[str] | None = None) -> int:
    p = step_parser("quality", "Quality gate: the declared checks of a stage, on a release's zones")
    p.add_argument("--stage", required=True, choices=STAGES, help="clean (before merge) or model (before publish)")
    p.add_argument("--run-dir", required=True, help="the run's directory (its steps/*.json reports)")
    for zone in ("ingest", "quarantine", "clean", "merge", "model", "truth"):
        p.add_argument(f"--{zone}", default=None, help=f"{zone} zone of the release")
    p.add_argument("--delivery", default=None, help="the delivery (a synthetic one has _truth/manifest.json)")
    p.add_argument("--lake", default=None, help="the region's lake root (published releases, for drift)")
    p.add_argument("--checks", default=None, help="checks file (default: sql/quality/checks.yaml)")
    add_config_args(p)

    def body(args, engine: Engine) -> dict:
        zones = {z: getattr(args, z) for z in ("ingest", "quarantine", "clean", "merge", "model")}
        return run_gate(engine, args.stage, zones=zones, run_dir=args.run_dir, icfg=IngestConfig.load(args.config),
                        release=args.release, checks=args.checks, delivery=args.delivery, truth=args.truth,
                        lake=args.lake)

    stage = p.parse_known_args(argv)[0].stage  # the report is named after it: gate_clean, gate_model
    return run_step(f"gate_{stage}", p, body, argv, expected=(DeliveryError,))


if __name__ == "__main__":
    sys.exit(main())
