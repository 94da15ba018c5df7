"""Feasibility report step: one self-contained HTML page (plus the same aggregates as JSON) per run of
a release, read from the run's model zone and step reports.

    python -m spark_jobs.feasibility --engine duckdb --model MODEL_ZONE --run-dir RUN_DIR \
        --output RUN_DIR/feasibility.html --report REPORT.json --release R --run-id ID \
        [--nomenclatures DIR]
    spark-submit spark_jobs/feasibility.py --engine spark ...   (same arguments)
    python -m spark_jobs.feasibility --extract-nomenclatures SRC_DIR [--nomenclatures OUT_DIR]

Sections (docs/feasibility-report.md): attrition from the raw rows to the model rows (from the
reports in RUN_DIR/steps/), population pyramid, events per year per table, top diagnoses, drugs and
procedures with their labels (config/nomenclatures/), death sources agreement, CMU-C share by year,
and the quality gates' checks. Aggregates are SQL (sql/report/), identical on both engines; labels
are joined in Python afterwards.

Small counts are masked as the SNDS publication rules require (`MIN_PUBLISHED`): a count of 1 to 9
patients (or rows) is published as "<10", a count of events concerning 1 to 9 patients too, and
where a published total (or an equal number elsewhere in the report) would let a reader compute a
masked cell, another cell of that sum is masked as well ("masked"; see `suppress`). Masking happens
once, on every count of the report together, before anything is written: neither the HTML nor the
JSON holds an unmasked small count.

The HTML has no script and fetches nothing: inline CSS, inline SVG charts drawn here. Same inputs,
same bytes: everything is sorted, and the only time in it is the model step's start time.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
import logging
import math
import re
import sys
from pathlib import Path

from spark_jobs import lakefs, sqlrender
from spark_jobs.bundle import resource
from spark_jobs.engines import Engine
from spark_jobs.lakefs import LakePath
from spark_jobs.model import BUILD_ORDER
from spark_jobs.report import code_version, step_reports
from spark_jobs.stepargs import step_parser
from spark_jobs.steprun import StepError, parquet_files, run_step

log = logging.getLogger("snds.feasibility")

#: SNDS publication rule: a count of 1 to 9 patients is never published (0 may be). Applied to
#: patient counts, to event counts concerning 1-9 patients, and (conservatively) to row counts.
MIN_PUBLISHED = 10
#: How a masked cell is published: below the threshold, or masked to protect one that is.
MASKED_SMALL = f"<{MIN_PUBLISHED}"
MASKED_SECONDARY = "masked"

NOMENCLATURES_DIR = "config/nomenclatures"
#: Nomenclature files: (output CSV, source CSV, code column, label column, ICD-10 normalisation).
NOMENCLATURES = (
    ("icd10.csv", "IR_CIM_V.csv", "CIM_COD", "CIM_LIB", True),
    ("ccam.csv", "IR_CCAM_V63.csv", "CAM_PRS_IDE_COD", "CAM_PRS_IDE_LIB", False),
    ("atc.csv", "openmedic_ATC5.csv", "ATC5", "Libellé ATC5", False),
)
#: Top codes: (key, title, model table, code column, nomenclature file).
TOP_CODES = (
    ("diagnoses", "Diagnoses (ICD-10)", "diagnoses", "code", "icd10.csv"),
    ("drugs", "Drugs (ATC)", "drug_dispensations", "atc", "atc.csv"),
    ("procedures", "Procedures (CCAM)", "procedures", "code", "ccam.csv"),
)
TOP_LIMIT = 10
#: Event tables and the year of their events (a SQL expression over the table's columns).
EVENT_TABLES = (
    ("diagnoses", "year(date)", "date"),
    ("procedures", "year(date)", "date"),
    ("consults", "year(date)", "date"),
    ("biology", "year(date)", "date"),
    ("devices", "year(date)", "date"),
    ("drug_dispensations", "year(date)", "date"),
    ("stays", "year(start_date)", "start_date"),
    ("deaths_by_source", "year(death_date)", "death_date"),
    ("cmuc", "year", "year"),
)
DEATH_SOURCES = ("IR_BEN_R", "DCIR", "PMSI", "KI_CCI_R")
#: Age bands of the pyramid: 0-4 ... 90-94, then 95+.
AGE_BANDS = tuple(f"{5 * i}-{5 * i + 4}" for i in range(19)) + ("95+",)
SEXES = ((1, "men"), (2, "women"))
GATES = ("gate_clean", "gate_model")
SECTIONS = (("attrition", "Attrition"), ("pyramid", "Population pyramid"),
            ("events-per-year", "Events per year"), ("top-codes", "Top codes"),
            ("deaths", "Death sources"), ("cmuc", "CMU-C share"), ("gates", "Quality gates"))


# --- masking ---------------------------------------------------------------------------------------

class Cells:
    """Every count of the report, by key, with the sums a reader could use against a masked one.

    `add(key, value, patients=...)`: a count; small (masked "<10") when 1..9, or when it counts
    events of 1..9 `patients`. `relate(total, parts)`: total = sum of parts, all published (an
    equality when there is one part). `suppress()` then masks, and `get(key)` gives the published
    value: the int, "<10" or "masked"."""

    def __init__(self) -> None:
        self.values: dict[tuple, int] = {}
        self.small: set[tuple] = set()
        self.relations: list[tuple[tuple, tuple[tuple, ...]]] = []
        self.masked: set[tuple] | None = None

    def add(self, key: tuple, value: int, patients: int | None = None) -> tuple:
        if key in self.values:
            raise ValueError(f"count {key} registered twice")
        value = int(value)
        self.values[key] = value
        if 0 < value < MIN_PUBLISHED or (patients is not None and 0 < int(patients) < MIN_PUBLISHED):
            self.small.add(key)
        return key

    def relate(self, total: tuple, parts) -> None:
        parts = tuple(parts)
        missing = [k for k in (total, *parts) if k not in self.values]
        if missing:
            raise ValueError(f"relation over unregistered counts {missing}")
        self.relations.append((total, parts))

    def suppress(self) -> None:
        self.masked = suppress(self.values, self.small, self.relations)

    def get(self, key: tuple):
        if self.masked is None:
            raise RuntimeError("suppress() first")
        if key in self.small:
            return MASKED_SMALL
        if key in self.masked:
            return MASKED_SECONDARY
        return self.values[key]

    def share(self, numerator: tuple, denominator: tuple, digits: int = 1):
        """numerator / denominator in %, or "masked" when either is masked (or the denominator 0)."""
        n, d = self.get(numerator), self.get(denominator)
        if isinstance(n, str) or isinstance(d, str) or d == 0:
            return MASKED_SECONDARY if (isinstance(n, str) or isinstance(d, str)) else None
        return round(100.0 * n / d, digits)

    def totals(self) -> dict:
        return {"cells": len(self.values), "masked_small": len(self.small),
                "masked_secondary": len((self.masked or set()) - self.small)}


def suppress(values: dict, small: set, relations: list) -> set:
    """Small cells plus the cells masked to protect them (secondary suppression): in every relation
    total = sum(parts), one masked member alone could be computed from the others, so while some
    relation has exactly one, mask its smallest non-zero unmasked part too (the total if there is
    none). Returns every masked key. Deterministic: ties broken by key."""
    masked = set(small)
    changed = True
    while changed:
        changed = False
        for total, parts in relations:
            members = (total, *parts)
            if sum(1 for k in members if k in masked) != 1:
                continue
            candidates = sorted((values[k], repr(k), k) for k in parts if k not in masked and values[k] > 0)
            if candidates:
                masked.add(candidates[0][2])
            elif total not in masked:
                masked.add(total)
            else:
                continue  # the total is the masked one and every part is 0: nothing to protect
            changed = True
    return masked


# --- nomenclatures ---------------------------------------------------------------------------------

def _normalise_code(code: str, icd10: bool) -> str:
    code = code.strip()
    return code.replace(".", "").upper() if icd10 else code


def extract_nomenclatures(source_dir, out_dir) -> dict[str, int]:
    """Write `code;label` UTF-8 CSVs (sorted by code, one line per code) from the shared SNDS
    nomenclatures; returns the codes written per file. Byte-identical for the same sources."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, source, code_column, label_column, icd10 in NOMENCLATURES:
        labels: dict[str, str] = {}
        with open(source_dir / source, encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh, delimiter=";"):
                code = _normalise_code(row[code_column] or "", icd10)
                label = " ".join((row[label_column] or "").split())
                if code and label:
                    labels.setdefault(code, label)  # the first label of a code wins
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter=";", lineterminator="\n")
        writer.writerow(["code", "label"])
        writer.writerows(sorted(labels.items()))
        lakefs.write_bytes(out_dir / name, buf.getvalue().encode("utf-8"))
        written[name] = len(labels)
    return written


def load_labels(directory, name: str) -> dict[str, str]:
    """code -> label of one nomenclature file (empty when the file is absent: codes shown bare)."""
    path = Path(directory) / name
    if not path.is_file():
        log.warning("%s: no such nomenclature; codes are shown without labels", path)
        return {}
    with open(path, encoding="utf-8", newline="") as fh:
        return {row["code"]: row["label"] for row in csv.DictReader(fh, delimiter=";")}


# --- aggregates ------------------------------------------------------------------------------------

def _register_model(engine: Engine, model_zone: LakePath, tables) -> None:
    for table in tables:
        if not parquet_files(model_zone / table):
            raise StepError(f"{model_zone / table}: no Parquet files (did the model step run?)")
        engine.read_parquet(table, model_zone / table)


def _attrition(cells: Cells, reports: dict, model_rows: dict) -> dict:
    """Stages from the raw rows to the model rows, from the step reports (row counts)."""
    stages: list[dict] = []
    missing = [s for s in ("ingest", "clean_dcir", "clean_pmsi", "merge", "model") if reports.get(s) is None]

    def stage(kind: str, label: str, key: tuple, value: int, group: str) -> tuple:
        cells.add(key, value)
        stages.append({"kind": kind, "label": label, "key": key, "group": group})
        return key

    ingest = reports.get("ingest")
    ingested = None
    if ingest:
        read = stage("level", "raw rows read", ("attrition", "read"), ingest["totals"]["rows_read"], "ingest")
        removed = []
        for reason, n in sorted(ingest.get("quarantine", {}).get("by_reason", {}).items()):
            removed.append(stage("removed", f"quarantined: {reason}", ("attrition", "quarantine", reason), n, "ingest"))
        for rule, tables in sorted(ingest.get("dropped_by_rule", {}).items()):
            removed.append(stage("removed", f"ingest rule: {rule}", ("attrition", "ingest_rule", rule),
                                 sum(tables.values()), "ingest"))
        ingested = stage("level", "rows ingested", ("attrition", "ingested"), ingest["totals"]["rows_written"], "ingest")
        cells.relate(read, removed + [ingested])

    cleans = [(s, reports[s]) for s in ("clean_dcir", "clean_pmsi") if reports.get(s)]
    by_table = []
    if cleans:
        table_in, table_out = [], []
        rule_cells: dict[str, list[tuple]] = {}
        for step, rep in cleans:
            for table, t in sorted(rep["tables"].items()):
                k_in = cells.add(("attrition", "clean_table", table, "rows_read"), t["rows_read"])
                k_out = cells.add(("attrition", "clean_table", table, "rows"), t["rows"])
                parts = []
                for rule, n in sorted(t.get("dropped_by_rule", {}).items()):
                    k = cells.add(("attrition", "clean_cell", table, rule), n)
                    rule_cells.setdefault(rule, []).append(k)
                    parts.append(k)
                cells.relate(k_in, parts + [k_out])
                table_in.append(k_in)
                table_out.append(k_out)
                by_table.append({"step": step, "table": table, "rows_read": k_in, "rows": k_out,
                                 "removed": {rule: k for rule, k in zip(sorted(t.get("dropped_by_rule", {})), parts)}})
        clean_in_value = sum(cells.values[k] for k in table_in)
        if ingested is not None:
            not_cleaned = stage("removed", "not cleaned: referential tables", ("attrition", "not_cleaned"),
                                cells.values[ingested] - clean_in_value, "clean")
        clean_in = stage("level", "rows entering clean", ("attrition", "clean_in"), clean_in_value, "clean")
        if ingested is not None:
            cells.relate(ingested, [not_cleaned, clean_in])
        rules = []
        for rule in sorted(rule_cells):
            k = stage("removed", f"clean rule: {rule}", ("attrition", "clean_rule", rule),
                      sum(cells.values[c] for c in rule_cells[rule]), "clean")
            cells.relate(k, rule_cells[rule])
            rules.append(k)
        clean_out = stage("level", "rows after clean", ("attrition", "clean_out"),
                          sum(cells.values[k] for k in table_out), "clean")
        cells.relate(clean_in, rules + [clean_out])
        cells.relate(clean_in, table_in)
        cells.relate(clean_out, table_out)

    merge = reports.get("merge")
    if merge:
        for side in ("dcir", "pmsi"):
            if side in merge.get("tables", {}):
                stage("level", f"merge items: {side.upper()}", ("attrition", "merge", side),
                      merge["tables"][side]["rows"], "merge")
    for table in sorted(model_rows):
        stage("level", f"model rows: {table}", ("model_rows", table), model_rows[table], "model")
    return {"stages": stages, "clean_by_table": by_table, "missing_reports": missing}


def _pyramid(cells: Cells, rows, patients_total: tuple) -> dict:
    counts = {(status, sex, band): n for status, sex, band, n in rows}
    keys = []
    out = {"bands": list(AGE_BANDS)}
    for sex, name in SEXES:
        out[name] = [cells.add(("pyramid", name, band), counts.get(("alive", sex, i), 0))
                     for i, band in enumerate(AGE_BANDS)]
        keys += out[name]
    for status in ("unknown_sex", "unknown_age", "not_alive"):
        out[status] = cells.add(("pyramid", status), sum(n for (s, _, _), n in counts.items() if s == status))
        keys.append(out[status])
    # Every patient is in one cell: the cells add up to the patients table's rows (published).
    cells.relate(patients_total, keys)
    return out


def _year_label(year: int, first: int, last: int) -> str:
    if year == 0:
        return "no date"
    if year < first:
        return f"before {first}"
    if year > last:
        return f"after {last}"
    return str(year)


def _events_per_year(cells: Cells, rows, first: int, last: int) -> dict:
    by_table: dict[str, list] = {t: [] for t, _, _ in EVENT_TABLES}
    for table, year, events, patients in rows:
        by_table[table].append((int(year), int(events), int(patients)))
    out = []
    for table, _, column in EVENT_TABLES:
        entries, event_keys = [], []
        # "no date" last, the rest in calendar order
        for year, events, patients in sorted(by_table[table], key=lambda r: (r[0] == 0, r[0])):
            kp = cells.add(("events", table, year, "patients"), patients)
            ke = cells.add(("events", table, year, "events"), events, patients=patients)
            if events == patients:  # one event per patient: publishing one publishes the other
                cells.relate(ke, [kp])
            event_keys.append(ke)
            entries.append({"year": _year_label(year, first, last), "events": ke, "patients": kp})
        cells.relate(("model_rows", table), event_keys)
        out.append({"table": table, "date": column, "years": entries})
    return {"tables": out}


def _top_codes(cells: Cells, engine: Engine, nomenclatures) -> dict:
    out = {}
    for key, title, table, column, nomenclature in TOP_CODES:
        labels = load_labels(nomenclatures, nomenclature)
        rows = engine.rows(sqlrender.render("report/top_codes.sql", table=table, column=column, limit=TOP_LIMIT))
        entries = []
        for rank, (code, patients, events) in enumerate(rows, 1):
            kp = cells.add(("top", key, code, "patients"), patients)
            ke = cells.add(("top", key, code, "events"), events, patients=patients)
            if events == patients:
                cells.relate(ke, [kp])
            entries.append({"rank": rank, "code": code, "label": labels.get(code, ""), "patients": kp, "events": ke})
        out[key] = {"title": title, "table": table, "column": column, "codes": entries}
    return out


def _deaths(cells: Cells, engine: Engine) -> dict:
    combos = engine.rows(sqlrender.render("report/death_combinations.sql", sources=DEATH_SOURCES))
    total = cells.add(("deaths", "patients_with_source"), sum(r[-1] for r in combos))
    combinations, combo_keys = [], []
    for row in sorted(combos, key=lambda r: (-sum(r[:-1]), tuple(-f for f in r[:-1]))):
        sources = [s for s, flag in zip(DEATH_SOURCES, row[:-1]) if flag]
        k = cells.add(("deaths", "combination", "+".join(sources)), row[-1])
        combo_keys.append((set(sources), k))
        combinations.append({"sources": sources, "patients": k})
    cells.relate(total, [k for _, k in combo_keys])

    pair_rows = {(a, b, int(same)): n for a, b, same, n in
                 engine.rows(sqlrender.render("report/death_pairs.sql"))}
    pairs = []
    for i, a in enumerate(DEATH_SOURCES):
        for b in DEATH_SOURCES[i + 1:]:
            first, second = sorted((a, b))  # the SQL pairs sources in text order
            same = cells.add(("deaths", "pair", a, b, "same_date"), pair_rows.get((first, second, 1), 0))
            differ = cells.add(("deaths", "pair", a, b, "different_dates"), pair_rows.get((first, second, 0), 0))
            both = cells.add(("deaths", "pair", a, b, "both"), cells.values[same] + cells.values[differ])
            cells.relate(both, [same, differ])
            cells.relate(both, [k for s, k in combo_keys if {a, b} <= s])
            pairs.append({"sources": [a, b], "both": both, "same_date": same, "different_dates": differ})
    (incoherent,), = engine.rows(sqlrender.render("report/patients_deaths.sql"))
    return {"sources": list(DEATH_SOURCES), "patients_with_source": total, "combinations": combinations,
            "pairs": pairs, "incoherent_death": cells.add(("deaths", "incoherent_death"), incoherent)}


def _cmuc(cells: Cells, rows) -> list:
    out = []
    for year, with_care, cmuc_patients in rows:
        year = int(year)
        den = cells.add(("cmuc", year, "patients_with_care"), with_care)
        num = ("events", "cmuc", year, "patients")  # the same number as in events per year
        if num not in cells.values:
            num = cells.add(("cmuc", year, "cmuc_patients"), cmuc_patients)
        elif cells.values[num] != cmuc_patients:
            raise StepError(f"cmuc {year}: {cmuc_patients} CMU-C patients, {cells.values[num]} in events per year")
        out.append({"year": year, "cmuc_patients": num, "patients_with_care": den, "share": (num, den)})
    return out


_SMALL_NUMBER = re.compile(r"(?<![\w.,])[1-9](?![\w.,])")


def _gate_observed(check: dict):
    """A check's observed value, masked when it is (or implies, as a fraction of its total) a count
    of 1..9 rows."""
    observed = check.get("observed")
    if isinstance(observed, bool) or not isinstance(observed, (int, float)):
        return observed
    count = observed
    if isinstance(observed, float) and not observed.is_integer():
        total = check.get("total")
        if not isinstance(total, (int, float)) or not total:
            return observed
        count = round(observed * total) if observed <= 1 else round(observed * total / 100)
    return MASKED_SMALL if 0 < count < MIN_PUBLISHED else observed


def _gates(reports: dict) -> dict:
    out = {}
    for gate in GATES:
        rep = reports.get(gate)
        if rep is None:
            out[gate] = {"present": False}
            continue
        checks = []
        for c in sorted(rep.get("checks", []), key=lambda c: (str(c.get("table")), str(c.get("name")))):
            checks.append({
                "name": c.get("name"), "kind": c.get("kind"), "table": c.get("table"),
                "severity": c.get("severity"), "status": c.get("status"),
                "observed": _gate_observed(c), "threshold": c.get("threshold"),
                "description": c.get("description", ""),
                # data-derived text: small numbers in it are masked like the counts
                "message": _SMALL_NUMBER.sub(MASKED_SMALL, str(c.get("message", ""))),
            })
        out[gate] = {"present": True, "status": rep.get("status"), "started_at": rep.get("started_at"),
                     "totals": rep.get("totals", {}), "checks": checks}
    return out


def _publish(value, cells: Cells):
    """Replace every count key in a section by its published value."""
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, tuple) for v in value):
        return cells.share(*value)
    if isinstance(value, tuple):
        return cells.get(value)
    if isinstance(value, dict):
        return {k: _publish(v, cells) for k, v in value.items() if k != "key"} | (
            {"rows": cells.get(value["key"])} if "key" in value else {})
    if isinstance(value, list):
        return [_publish(v, cells) for v in value]
    return value


def build_report(engine: Engine, model_zone, run_dir, nomenclatures, release: str, run_id: str) -> dict:
    """The report's aggregates, masked: a JSON-serialisable dict (what render_html draws)."""
    model_zone, run_dir = lakefs.current(model_zone), LakePath(run_dir)
    nomenclatures = Path(nomenclatures) if nomenclatures else resource(NOMENCLATURES_DIR)
    found = step_reports(run_dir)
    reports = {s: found.get(s) for s in ("ingest", "clean_dcir", "clean_pmsi", "merge", "model", *GATES)}
    _register_model(engine, model_zone, BUILD_ORDER)
    try:
        model_rows = dict(engine.rows(sqlrender.render("report/model_rows.sql", tables=BUILD_ORDER)))
        (first, last), = engine.rows(sqlrender.render("report/care_period.sql"))
        if first is None:
            raise StepError(f"{model_zone}: the model has no dated care event: nothing to report on")
        first, last = int(first), int(last)
        cells = Cells()
        sections = {"attrition": _attrition(cells, reports, model_rows)}
        sections["pyramid"] = _pyramid(cells, engine.rows(sqlrender.render(
            "report/pyramid.sql", reference_year=last, last_band=len(AGE_BANDS) - 1)), ("model_rows", "patients"))
        sections["events_per_year"] = _events_per_year(cells, engine.rows(sqlrender.render(
            "report/events_per_year.sql", first_year=first, last_year=last,
            tables=[{"table": t, "year": y} for t, y, _ in EVENT_TABLES])), first, last)
        sections["top_codes"] = _top_codes(cells, engine, nomenclatures)
        sections["deaths"] = _deaths(cells, engine)
        sections["cmuc"] = _cmuc(cells, engine.rows(sqlrender.render(
            "report/cmuc_share.sql", first_year=first, last_year=last)))
    finally:
        for table in BUILD_ORDER:
            engine.drop_view(table)
    cells.suppress()
    model_report = reports.get("model") or {}
    aggregates = {
        "release": release,
        "run_id": run_id,
        "model": str(model_zone),
        "model_started_at": model_report.get("started_at"),
        "code_version": code_version(),
        "masking": {"threshold": MIN_PUBLISHED, "small": MASKED_SMALL, "secondary": MASKED_SECONDARY},
        "care_period": {"first_year": first, "last_year": last, "reference_date": f"{last}-12-31"},
    }
    aggregates.update({name: _publish(section, cells) for name, section in sections.items()})
    aggregates["gates"] = _gates(reports)
    aggregates["totals"] = {"sections": len(SECTIONS), **cells.totals()}
    return aggregates


# --- HTML ------------------------------------------------------------------------------------------

def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ")
    if isinstance(value, float):
        return f"{value:,.1f}".replace(",", " ") if abs(value) >= 1 or value == 0 else f"{value:.4g}"
    return str(value)


def _num(value) -> float | None:
    """A published value as a number for drawing (None when masked)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text_width(text: str, size: float = 12) -> float:
    """A generous estimate of a label's width in the page's sans-serif font (no font metrics here)."""
    return sum(0.7 if ch.isupper() or ch.isdigit() else 0.56 for ch in text) * size


def _svg(chart_id: str, title: str, width: float, height: float, body: list[str]) -> str:
    return (f'<svg class="chart" id="{_e(chart_id)}" role="img" aria-labelledby="{_e(chart_id)}-title" '
            f'xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}"><title id="{_e(chart_id)}-title">{_e(title)}</title>'
            + "".join(body) + "</svg>")


def _text(x, y, text, anchor="start", cls="", size=None) -> str:
    attrs = f' class="{cls}"' if cls else ""
    attrs += f' font-size="{size}"' if size else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{attrs}>{_e(text)}</text>'


def _rect(x, y, w, h, cls, title=None) -> str:
    tip = f"<title>{_e(title)}</title>" if title else ""
    return f'<rect class="{cls}" x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}">{tip}</rect>'


def _hbar_chart(chart_id: str, title: str, rows: list[tuple[str, object, str]], axis: str,
                log: bool = False) -> str:
    """Horizontal bars: (label, published value, bar class). Masked values get a grey dashed stub and
    their mark; a log scale when values span orders of magnitude (attrition)."""
    label_w = max([_text_width(r[0]) for r in rows] + [60]) + 12
    bar_w, row_h, top = 420, 20, 10
    values = [_num(v) for _, v, _ in rows]
    vmax = max([v for v in values if v] + [MIN_PUBLISHED])
    if log:
        decades = max(1, math.ceil(math.log10(vmax)))
        scale = lambda v: bar_w * math.log10(max(v, 1)) / decades  # noqa: E731
        ticks = [10 ** i for i in range(decades + 1)]
    else:
        scale = lambda v: bar_w * v / vmax  # noqa: E731
        step = 10 ** max(0, math.floor(math.log10(vmax)))
        step = step // 2 if vmax / step < 3 and step >= 2 else step
        ticks = list(range(0, int(vmax) + 1, max(1, int(step))))
    height = top + row_h * len(rows) + 40
    width = label_w + bar_w + 90
    body = []
    for t in ticks:
        x = label_w + scale(t) if (t or not log) else label_w
        body.append(f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + row_h * len(rows)}"/>')
        body.append(_text(x, top + row_h * len(rows) + 14, _fmt(t), "middle", "tick"))
    body.append(_text(label_w + bar_w / 2, height - 6, axis, "middle", "axis"))
    for i, ((label, value, cls), v) in enumerate(zip(rows, values)):
        y = top + i * row_h
        body.append(_text(label_w - 6, y + 14, label, "end", "label"))
        if v is None:
            w = scale(MIN_PUBLISHED) if value == MASKED_SMALL else 0
            body.append(_rect(label_w, y + 3, max(w, 3), row_h - 6, "bar masked", f"{label}: {value}"))
        else:
            w = scale(v)
            body.append(_rect(label_w, y + 3, max(w, 1 if v else 0), row_h - 6, f"bar {cls}", f"{label}: {_fmt(value)}"))
        body.append(_text(label_w + (w if v is not None else max(w, 3)) + 4, y + 14, _fmt(value), "start", "value"))
    return _svg(chart_id, title, width, height, body)


def _vbar_chart(chart_id: str, title: str, bars: list[tuple[str, object]], axis: str, unit: str = "",
                x_axis: str = "year") -> str:
    """Vertical bars (years), value labels on top; masked values get a grey dashed stub and their mark."""
    plot_h, bar_w, gap, left, top = 140, 44, 12, 62, 20
    values = [_num(v) for _, v in bars]
    vmax = _nice_max(max([v for v in values if v] + [1]))
    width = left + len(bars) * (bar_w + gap) + 20
    height = top + plot_h + 40
    mid = top + plot_h / 2
    body = [f'<text x="14" y="{mid:.1f}" text-anchor="middle" class="axis" transform="rotate(-90 14 {mid:.1f})">'
            f"{_e(axis)}</text>", _text(left + (width - left) / 2, height - 4, x_axis, "middle", "axis")]
    for t in (0, vmax / 2, vmax):
        y = top + plot_h - plot_h * t / vmax
        body.append(f'<line class="grid" x1="{left - 4}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}"/>')
        body.append(_text(left - 6, y + 4, _fmt(int(t) if float(t).is_integer() else t), "end", "tick"))
    body.append(f'<line class="axisline" x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}"/>')
    for i, ((label, value), v) in enumerate(zip(bars, values)):
        x = left + gap / 2 + i * (bar_w + gap)
        if v is None:
            h = 3
            body.append(_rect(x, top + plot_h - h, bar_w, h, "bar masked", f"{label}: {value}"))
        else:
            h = plot_h * v / vmax
            body.append(_rect(x, top + plot_h - h, bar_w, max(h, 1 if v else 0), "bar", f"{label}: {_fmt(value)}{unit}"))
        shown = _fmt(value) + (unit if v is not None else "")
        body.append(_text(x + bar_w / 2, top + plot_h - h - 4, shown, "middle", "value"))
        body.append(_text(x + bar_w / 2, top + plot_h + 15, label, "middle", "tick"))
    return _svg(chart_id, title, width, height, body)


def _nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^k at least `value` (a round top for an axis)."""
    power = 10 ** math.floor(math.log10(value)) if value > 0 else 1
    for m in (1, 2, 5, 10):
        if m * power >= value:
            return m * power
    return 10 * power


def _pyramid_chart(p: dict) -> str:
    half, row_h, top, mid_w = 260, 16, 30, 56
    left = 20
    cx = left + half + mid_w / 2
    values = [_num(v) for v in p["men"] + p["women"]]
    vmax = max([v for v in values if v] + [MIN_PUBLISHED])
    n = len(p["bands"])
    height = top + row_h * n + 44
    width = left * 2 + half * 2 + mid_w
    body = [_text(cx - mid_w / 2 - half / 2, 18, "Men", "middle", "axis"),
            _text(cx + mid_w / 2 + half / 2, 18, "Women", "middle", "axis"),
            _text(cx, 18, "Age", "middle", "axis")]
    for i, band in enumerate(p["bands"]):
        y = top + (n - 1 - i) * row_h  # oldest on top
        body.append(_text(cx, y + 12, band, "middle", "tick"))
        for side, name in ((-1, "men"), (1, "women")):
            value = p[name][i]
            v = _num(value)
            w = half * v / vmax if v is not None else (half * MIN_PUBLISHED / vmax if value == MASKED_SMALL else 0)
            w = max(w, 3) if v is None else w
            x0 = cx + side * mid_w / 2
            x = x0 - w if side < 0 else x0
            cls = f"bar {name}" if v is not None else "bar masked"
            body.append(_rect(x, y + 2, w, row_h - 4, cls, f"{name} {band}: {_fmt(value)}"))
            tx = x - 3 if side < 0 else x + w + 3
            body.append(_text(tx, y + 12, _fmt(value), "end" if side < 0 else "start", "value", 10))
    body.append(_text(cx, height - 8, "patients alive on the reference date, by sex and age band", "middle", "axis"))
    return _svg("pyramid-chart", "Population pyramid: patients by age band and sex", width, height, body)


def _table(headers: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(
        f'<td class="{"masked" if v in (MASKED_SMALL, MASKED_SECONDARY) else "num" if isinstance(v, (int, float)) else ""}">'
        f"{v if isinstance(v, _Raw) else _e(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


class _Raw(str):
    """HTML already escaped (a badge)."""


def _badge(status) -> _Raw:
    cls = {"pass": "pass", "fail": "fail", "skipped": "skip", "success": "pass", "failed": "fail"}.get(str(status), "warn")
    return _Raw(f'<span class="badge {cls}">{_e(status)}</span>')


def _gate_status(check: dict) -> _Raw:
    if check["status"] == "fail" and check.get("severity") == "warning":
        return _Raw('<span class="badge warn">warn</span>')
    return _badge(check["status"])


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d2430;background:#fff}
header{background:#1d3557;color:#fff;padding:18px 28px}header h1{margin:0 0 8px;font-size:22px}
header dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0;font-size:13px}
header dt{opacity:.8}header dd{margin:0;word-break:break-all}
nav{padding:8px 28px;background:#eef2f7;font-size:13px}nav a{margin-right:14px;color:#1d3557}
main{padding:0 28px 40px;max-width:1200px}section{margin-top:26px}h2{border-bottom:2px solid #1d3557;padding-bottom:4px;font-size:19px}
h3{font-size:15px;margin:18px 0 6px}p.note{font-size:13px;color:#4a5568;max-width:900px}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0}th,td{border:1px solid #d5dbe3;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef2f7}td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}td.masked{text-align:right;color:#8a5a00;font-style:italic}
svg.chart{display:block;margin:8px 0;font-size:12px;max-width:100%;height:auto}
svg .label,svg .tick{fill:#1d2430}svg .tick{font-size:11px}svg .value{fill:#1d2430;font-size:11px}svg .axis{fill:#4a5568;font-size:12px;font-weight:600}
svg .grid{stroke:#e2e8f0}svg .axisline{stroke:#94a3b8}
svg .bar{fill:#457b9d}svg .bar.level{fill:#1d3557}svg .bar.removed{fill:#e63946}svg .bar.men{fill:#457b9d}svg .bar.women{fill:#e76f51}
svg .bar.masked{fill:#c9ced6;stroke:#8a94a6;stroke-dasharray:2 2}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;font-size:11.5px;font-weight:600;color:#fff}
.badge.pass{background:#2a9d8f}.badge.fail{background:#c1121f}.badge.warn{background:#e9a100;color:#1d2430}.badge.skip{background:#8a94a6}
.grid2{display:flex;flex-wrap:wrap;gap:10px 28px}.grid2>div{flex:0 0 auto}
"""


def _attrition_html(a: dict) -> str:
    rows = [(s["label"], s["rows"], s["kind"]) for s in a["stages"]]
    parts = ['<p class="note">Rows, from the delivery to the model, as the step reports count them: levels '
             '(dark) and rows set aside or removed at each stage (red). Merge items and model rows are other '
             'units (a DCIR line or detail, a PMSI stay, diagnosis or act; one event), so the last bars are '
             'levels of their own. Log scale.</p>']
    if a["missing_reports"]:
        parts.append(f'<p class="note">Reports missing from the run: {_e(", ".join(a["missing_reports"]))}.</p>')
    parts.append(_hbar_chart("attrition-chart", "Attrition: rows per stage and rows removed per rule", rows,
                             "rows (log scale)", log=True))
    for step in sorted({t["step"] for t in a["clean_by_table"]}):
        tables = [t for t in a["clean_by_table"] if t["step"] == step]
        rules = sorted({r for t in tables for r in t["removed"]})
        parts.append(f"<h3>{_e(step)}: rows removed by each cleaning rule, per table</h3>")
        parts.append(_table(["table", "rows read", *[r.replace("_", "_\u200b") for r in rules], "rows kept"],
                            [[t["table"], t["rows_read"], *[t["removed"].get(r, 0) for r in rules], t["rows"]]
                             for t in tables]))
    return "".join(parts)


def _pyramid_html(p: dict, period: dict) -> str:
    return (f'<p class="note">Patients alive on the reference date, {_e(period["reference_date"])} (31 December of '
            f'the last year with a care event in the model), by sex and age on that date (reference year - birth '
            f'year) in 5-year bands.</p>' + _pyramid_chart(p)
            + _table(["apart from the pyramid", "patients"],
                     [["unknown sex (not 1 or 2)", p["unknown_sex"]], ["unknown age (no birth year)", p["unknown_age"]],
                      ["died on or before the reference date", p["not_alive"]]]))


def _events_html(e: dict) -> str:
    parts = ['<p class="note">Events (bars) and distinct patients per calendar year of the event date, for each '
             'event table. Years outside the care period are gathered at its ends; cmuc counts patient-years.</p>',
             '<div class="grid2">']
    for t in e["tables"]:
        parts.append("<div>" + f"<h3>{_e(t['table'])} <small>({_e(t['date'])})</small></h3>")
        parts.append(_vbar_chart(f"events-{t['table']}", f"Events per year: {t['table']}",
                                 [(y["year"], y["events"]) for y in t["years"]], "events"))
        parts.append(_table(["year", "events", "patients"], [[y["year"], y["events"], y["patients"]] for y in t["years"]]))
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


def _top_html(top: dict) -> str:
    parts = [f'<p class="note">The {TOP_LIMIT} codes with the most distinct patients in each axis, with their '
             'events; labels from config/nomenclatures/.</p>']
    for key, t in top.items():
        parts.append(f"<h3>{_e(t['title'])} <small>({_e(t['table'])}.{_e(t['column'])})</small></h3>")
        bars = []
        for c in t["codes"]:
            label = c["code"] + (f" {c['label'][:48]}…" if len(c["label"]) > 48 else f" {c['label']}" if c["label"] else "")
            bars.append((label, c["patients"], "code"))
        if bars:
            parts.append(_hbar_chart(f"top-{key}", f"Top {TOP_LIMIT} {t['title']} by patients", bars, "patients"))
        parts.append(_table(["rank", "code", "label", "patients", "events"],
                            [[str(c["rank"]), c["code"], c["label"], c["patients"], c["events"]] for c in t["codes"]]))
    return "".join(parts)


def _deaths_html(d: dict) -> str:
    bars = [(" + ".join(c["sources"]), c["patients"], "code") for c in d["combinations"]]
    parts = ['<p class="note">Patients per combination of the death sources recording a death for them '
             f'(IR_BEN_R, DCIR, PMSI, CépiDc KI_CCI_R), {_e(_fmt(d["patients_with_source"]))} patients in all. '
             'Per pair of sources: patients recorded by both, with at least one common date or only different '
             'dates.</p>']
    if bars:
        parts.append(_hbar_chart("deaths-chart", "Patients per combination of death sources", bars, "patients"))
    parts.append(_table(["sources", "patients recorded by both", "same date", "different dates"],
                        [[" + ".join(p["sources"]), p["both"], p["same_date"], p["different_dates"]] for p in d["pairs"]]))
    parts.append(_table(["patients", "count"],
                        [["flagged incoherent_death (source dates 7 days or more apart)", d["incoherent_death"]]]))
    return "".join(parts)


def _cmuc_html(c: list) -> str:
    return ('<p class="note">Patients with CMU-C in the year (cmuc) over patients with a care event or a CMU-C '
            'year in it, per year of the care period.</p>'
            + _vbar_chart("cmuc-chart", "CMU-C share of patients by year", [(str(r["year"]), r["share"]) for r in c],
                          "% of patients", " %")
            + _table(["year", "CMU-C patients", "patients with care", "share (%)"],
                     [[str(r["year"]), r["cmuc_patients"], r["patients_with_care"], r["share"]] for r in c]))


def _gates_html(g: dict) -> str:
    parts = []
    for gate in GATES:
        rep = g[gate]
        if not rep["present"]:
            parts.append(f'<h3>{_e(gate)}</h3><p class="note">No {_e(gate)} report in this run: the gate did '
                         'not run (or ran in another run).</p>')
            continue
        totals = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(rep["totals"].items()))
        parts.append(f"<h3>{_e(gate)} {_badge(rep['status'])}</h3><p class=\"note\">{_e(totals)}</p>")
        parts.append(_table(["check", "table", "severity", "status", "observed", "threshold", "message"],
                            [[c["name"], c["table"], c["severity"], _gate_status(c), c["observed"], c["threshold"],
                              c["message"] or c["description"]] for c in rep["checks"]], "gates"))
    return "".join(parts)


def render_html(aggregates: dict) -> str:
    """The report page: one HTML document, no script, no external resource."""
    a = aggregates
    m = a["masking"]
    header = [("release", a["release"]), ("run", a["run_id"]), ("model", a["model"]),
              ("model built", a["model_started_at"] or "unknown"), ("code version", a["code_version"]),
              ("care period", f"{a['care_period']['first_year']}–{a['care_period']['last_year']}"),
              ("small counts", f"counts of 1 to {m['threshold'] - 1} patients or rows, and events of 1 to "
                               f"{m['threshold'] - 1} patients, are shown as “{m['small']}”; cells that would let "
                               f"one be computed from a published total are shown as “{m['secondary']}”")]
    bodies = {
        "attrition": _attrition_html(a["attrition"]),
        "pyramid": _pyramid_html(a["pyramid"], a["care_period"]),
        "events-per-year": _events_html(a["events_per_year"]),
        "top-codes": _top_html(a["top_codes"]),
        "deaths": _deaths_html(a["deaths"]),
        "cmuc": _cmuc_html(a["cmuc"]),
        "gates": _gates_html(a["gates"]),
    }
    out = ['<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           # Nothing may be fetched: the page is read offline, inside the data's region.
           "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
           f"<title>Feasibility report — release {_e(a['release'])}</title><style>{CSS}</style></head><body>",
           f"<header><h1>Feasibility report — release {_e(a['release'])}</h1><dl>",
           "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in header), "</dl></header><nav>",
           "".join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title in SECTIONS), "</nav><main>"]
    for sid, title in SECTIONS:
        out.append(f'<section id="{sid}"><h2>{_e(title)}</h2>{bodies[sid]}</section>')
    out.append("</main></body></html>\n")
    return "".join(out)


# --- step ------------------------------------------------------------------------------------------

def json_location(output) -> LakePath:
    """The JSON beside the HTML: same stem, .json."""
    output = LakePath(output)
    stem = output.name[: -len(output.suffix)] if output.suffix else output.name
    return output.with_name(stem + ".json")


def run_feasibility(engine: Engine, model_zone, run_dir, output, nomenclatures, release: str, run_id: str) -> dict:
    aggregates = build_report(engine, model_zone, run_dir, nomenclatures, release, run_id)
    page = render_html(aggregates).encode("utf-8")
    data = (json.dumps(aggregates, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
    json_path = json_location(output)
    lakefs.write_bytes(json_path, data)
    lakefs.write_bytes(output, page)
    log.info("feasibility report: %s (%d bytes), %s", output, len(page), json_path)
    return {"html": str(output), "json": str(json_path), "model": aggregates["model"],
            "totals": {**aggregates["totals"], "html_bytes": len(page), "json_bytes": len(data)}}


def _extract_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="spark_jobs.feasibility --extract-nomenclatures",
                                description="Write config/nomenclatures/*.csv from the SNDS nomenclatures")
    p.add_argument("--extract-nomenclatures", required=True, metavar="SRC_DIR",
                   help="directory of IR_CIM_V.csv, IR_CCAM_V63.csv and openmedic_ATC5.csv")
    p.add_argument("--nomenclatures", default=None, help=f"output directory (default: {NOMENCLATURES_DIR})")
    args = p.parse_args(argv)
    out = Path(args.nomenclatures) if args.nomenclatures else resource(NOMENCLATURES_DIR)
    for name, codes in extract_nomenclatures(args.extract_nomenclatures, out).items():
        print(f"{out / name}: {codes} codes")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a == "--extract-nomenclatures" or a.startswith("--extract-nomenclatures=") for a in argv):
        return _extract_main(argv)
    p = step_parser("feasibility", "Model zone + run reports -> feasibility report (HTML and JSON)")
    p.add_argument("--model", required=True, help="the run's model zone")
    p.add_argument("--run-dir", required=True, help="the run's directory (runs/release=R/<run>/, with steps/*.json)")
    p.add_argument("--output", required=True, help="the HTML to write (the JSON goes beside it: same stem, .json)")
    p.add_argument("--nomenclatures", default=None, help=f"code;label CSVs (default: {NOMENCLATURES_DIR})")

    def body(args, engine: Engine) -> dict:
        return run_feasibility(engine, args.model, args.run_dir, args.output, args.nomenclatures,
                               args.release, args.run_id)

    return run_step("feasibility_report", p, body, argv,
                    inputs=lambda a: {"model": a.model, "run_dir": a.run_dir},
                    outputs=lambda a: {"html": a.output, "json": str(json_location(a.output))})


if __name__ == "__main__":
    sys.exit(main())
