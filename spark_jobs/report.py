"""Step reports and the run summary.

Each step writes one JSON report (`<run dir>/steps/<step>.json`); the summarize task of the DAG
assembles them into the run's `summary.json`. Reports hold counts, paths and timings only, never
row values, so no patient identifier can reach them.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

from spark_jobs import lakefs
from spark_jobs.lakefs import LakePath

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SUMMARY_VERSION = 1


def code_version() -> str:
    """Package version plus the git commit when run from a checkout (`+dirty` if modified)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        base = version("snds-lake")
    except PackageNotFoundError:
        base = "0+unknown"
    try:
        sha = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"{base}+g{sha}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return base


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


#: The generator's `cleaning_stays` rule names that differ per source.
_STAY_RULES = {"error_group": {"MCO": "mco_error_ghm", "SSR": "ssr_error_gme", "HAD": "had_error_ghpc"}}


def _check_ingest(ingest: dict, manifest: dict) -> list[str]:
    got = {f["file"]: f for t in ingest["tables"].values() for f in t["files"]}
    rules = set(ingest.get("rules_applied", []))
    differences = []
    for name, truth in sorted(manifest["files"].items()):
        f = got.get(name)
        if f is None:
            differences.append(f"{name}: in the truth, not ingested")
        elif f["rows_read"] != truth["rows"] or f["quarantine_reasons"] != truth["quarantine"]:
            differences.append(
                f"{name}: read {f['rows_read']} quarantined {f['quarantine_reasons']}, "
                f"truth {truth['rows']} quarantined {truth['quarantine']}"
            )
        elif (nulled := {f'{c["column"]}|{c["reason"]}': c["cells"] for c in f.get("nulled_cells") or []}) \
                != truth.get("nulled", {}):
            differences.append(f"{name}: nulled cells {nulled}, truth {truth.get('nulled', {})}")
        else:
            planted = {r: n for r, n in truth.get("cleaning", {}).items() if r in rules and n}
            if f.get("dropped_by_rule", {}) != planted:
                differences.append(f"{name}: dropped by rule {f.get('dropped_by_rule')}, truth {planted}")
    differences += [f"{name}: ingested, not in the truth" for name in sorted(set(got) - set(manifest["files"]))]
    return differences


def _check_clean(steps: dict, manifest: dict, ingest_rules: set[str]) -> list[str]:
    """Rows removed per rule and table, and stays removed per rule and source."""
    removed: dict[str, dict[str, int]] = {}
    stays: dict[str, dict[str, int]] = {}
    for step in ("clean_dcir", "clean_pmsi"):
        for rule, tables in steps[step].get("dropped_by_rule", {}).items():
            removed.setdefault(rule, {}).update(tables)
        for rule, sources in steps[step].get("stays_removed_by_rule", {}).items():
            stays.setdefault(rule, {}).update(sources)
    differences = []
    for rule, tables in sorted(manifest.get("cleaning", {}).items()):
        if rule in ingest_rules:
            continue  # applied (and checked) by ingest
        for table, n in sorted(tables.items()):
            got = removed.get(rule, {}).get(table, 0)
            if got != n:
                differences.append(f"clean: {rule} removed {got} {table} rows, truth {n}")
    for rule, sources in sorted(manifest.get("cleaning_stays", {}).items()):
        for source, n in sorted(sources.items()):
            name = _STAY_RULES.get(rule, {}).get(source, rule)
            if name in ingest_rules:
                continue
            got = stays.get(name, {}).get(source, 0)
            if got != n:
                differences.append(f"clean: {name} removed {got} {source} stays, truth {n}")
    return differences


def _check_model(model: dict, manifest: dict) -> tuple[list[str], list[str]]:
    """Rows per event table; returns (differences, truth tables this pipeline does not build)."""
    differences, unchecked = [], []
    for table, n in sorted(manifest.get("events", {}).items()):
        t = model["tables"].get(table)
        if t is None:
            unchecked.append(table)
        elif t["rows"] != n:
            differences.append(f"model: {table} has {t['rows']} rows, truth {n}")
    return differences, unchecked


def truth_check(steps: dict, manifest: dict) -> dict:
    """Compare the step reports with a synthetic delivery's truth (`_truth/manifest.json`): per file,
    rows read, quarantine counts by reason and rows dropped by the rules ingest applies; rows removed
    by each cleaning rule per table and stays per source; rows per event table of the model. Steps
    that did not run are reported as not checked."""
    ingest = steps.get("ingest")
    if not ingest or ingest.get("status") != "success":
        return {"status": "not_checked", "reason": "ingest did not succeed"}
    differences = _check_ingest(ingest, manifest)
    checked = ["ingest"]
    if all(steps.get(s, {}).get("status") == "success" for s in ("clean_dcir", "clean_pmsi")):
        differences += _check_clean(steps, manifest, set(ingest.get("rules_applied", [])))
        checked.append("clean")
    unchecked_events = []
    if steps.get("model", {}).get("status") == "success":
        model_diff, unchecked_events = _check_model(steps["model"], manifest)
        differences += model_diff
        checked.append("model")
    return {"status": "match" if not differences else "mismatch", "files": len(manifest["files"]),
            "checked": checked, "events_not_built": unchecked_events, "differences": differences}


def _status(steps: dict, selected: list[str] | None, dry_run: bool) -> str:
    """success when every expected report is there and successful and no report failed (a failed
    quality gate fails the run even though the steps it audits succeeded)."""
    if dry_run:
        return "dry_run"
    wanted = list(selected) if selected else list(steps)  # a report's `step` is its task id
    ok = (bool(wanted) and all(steps.get(name, {}).get("status") == "success" for name in wanted)
          and all(step.get("status") == "success" for step in steps.values()))
    return "success" if ok else "failed"


def step_reports(run_dir) -> dict:
    """The step reports of a run (`<run_dir>/steps/*.json`), by step name; reports being written
    (hidden temporary files) are left out."""
    reports = {}
    for path in lakefs.list_files(LakePath(run_dir) / "steps", ".json", recursive=False):
        if not path.name.startswith("."):
            data = lakefs.read_json(path)
            reports[data["step"]] = data
    return reports


def delivery_summary(steps: dict) -> dict:
    """What the run made of the delivery as it came: the profile it ran with (and what detection saw),
    the sources absent, the uncatalogued files, the columns typed as text, the cells nulled and why,
    the columns tables lacked and the rule inputs that were missing (from the ingest and clean reports)."""
    ingest = steps.get("ingest") or {}
    if not ingest.get("profile"):
        return {}
    delivery = ingest.get("delivery") or {}
    nulled: dict[str, int] = {}
    for cell in (ingest.get("quarantine") or {}).get("nulled_cells") or []:
        key = f"{cell['table']}.{cell['column']}: {cell['reason']}"
        nulled[key] = nulled.get(key, 0) + int(cell["cells"])
    missing_rule_inputs = []
    for name in ("clean_dcir", "clean_pmsi"):
        missing_rule_inputs += (steps.get(name) or {}).get("missing_rule_inputs") or []
    return {
        "profile": ingest["profile"],
        "sources_present": delivery.get("sources_present", []),
        "sources_absent": delivery.get("sources_absent", []),
        "uncatalogued": delivery.get("uncatalogued", []),
        "skipped": delivery.get("skipped", []),
        "text_columns": delivery.get("extra_columns", {}),
        "nulled_cells": dict(sorted(nulled.items())),
        "schema_columns_missing": delivery.get("schema_columns_missing", {}),
        "missing_rule_inputs": missing_rule_inputs,
    }


def assemble_summary(run_dir, *, region: str, release: str, run_id: str, engine: str,
                     input_uri: str, truth_manifest=None, extra: dict | None = None,
                     selected_steps: list[str] | None = None, dry_run: bool = False) -> LakePath:
    """Collect the step reports of a run into `<run_dir>/summary.json` and return its path. With the
    truth manifest of a synthetic delivery, the ingest counts are checked against it and a mismatch
    fails the run. A run that selected some steps succeeds when those did (`selected_steps`: every
    report expected, gates and publish included) and no report failed; a dry run has the status
    `dry_run`. `run_dir` and `truth_manifest` are local paths or s3:// URIs."""
    run_dir = LakePath(run_dir)
    steps = step_reports(run_dir)
    summary = {
        "summary_version": SUMMARY_VERSION,
        "region": region,
        "release": release,
        "run_id": run_id,
        "engine": engine,
        "input": input_uri,
        "code_version": code_version(),
        "written_at": now_utc(),
        "status": _status(steps, selected_steps, dry_run),
        "delivery": delivery_summary(steps),
        "steps": steps,
    }
    if truth_manifest is not None and lakefs.is_file(truth_manifest) and not dry_run:
        check = truth_check(steps, lakefs.read_json(truth_manifest))
        summary["truth_check"] = check
        if check["status"] == "mismatch":
            summary["status"] = "failed"
    if extra:
        summary.update(extra)
    path = run_dir / "summary.json"
    lakefs.write_json(path, summary)
    return path


def human_summary(summary: dict) -> str:
    """A short text view of a summary for the terminal."""
    lines = [
        f"Release {summary['release']} · region {summary['region']} · engine {summary['engine']} · "
        f"run {summary['run_id']} · {summary['status'].upper()}"
    ]
    delivery = summary.get("delivery") or {}
    if delivery:
        prof = delivery["profile"]
        lines.append(f"  delivery profile {prof['name']} ({'detected' if prof.get('source') == 'auto' else prof.get('source')}):"
                     f" separator {prof['separator']!r}, {prof['encoding']}, patient column {prof['patient_id_column']},"
                     f" decimal {prof['decimal_separator']!r}")
        if delivery.get("sources_absent"):
            lines.append(f"  sources absent: {', '.join(delivery['sources_absent'])}")
        for file, table in delivery.get("uncatalogued") or []:
            lines.append(f"  uncatalogued file {file}: ingested as all-text table {table}")
        for file in delivery.get("skipped") or []:
            lines.append(f"  uncatalogued file {file}: skipped")
        for table, columns in sorted((delivery.get("text_columns") or {}).items()):
            lines.append(f"  {table}: column(s) not in the schema, kept as text: {', '.join(columns)}")
        for what, n in (delivery.get("nulled_cells") or {}).items():
            lines.append(f"  unreadable cells nulled (row kept): {what} {n:,}")
        for item in delivery.get("missing_rule_inputs") or []:
            lines.append(f"  missing rule input: {item['message']}")
    for name, step in summary["steps"].items():
        totals = step.get("totals", {})
        lines.append(
            f"  {name:<12} {step.get('status', '?'):<8} {step.get('seconds', 0):>7.1f} s  "
            + "  ".join(f"{k}={v:,}" for k, v in totals.items())
        )
        for table, t in sorted(step.get("tables", {}).items()):
            q = f", {t['quarantined']:,} quarantined" if t.get("quarantined") else ""
            d = f", {t['dropped']:,} dropped by rule" if t.get("dropped") else ""
            lines.append(f"    {table:<20} {t['rows']:>10,} rows{q}{d}")
        by_reason = step.get("quarantine", {}).get("by_reason", {})
        if by_reason:
            lines.append("    quarantine: " + ", ".join(f"{r} {n:,}" for r, n in sorted(by_reason.items())))
        by_rule = step.get("dropped_by_rule", {})
        if by_rule:
            lines.append("    dropped by rule: " + ", ".join(f"{r} {sum(t.values()):,}" for r, t in sorted(by_rule.items())))
        for check in step.get("checks", []):
            if check["status"] == "fail":
                kind = "FAILED" if check["severity"] == "blocking" else "warning"
                lines.append(f"    {kind}: {check['name']}: {check['message']}")
        ps = step.get("pseudonymisation")
        if ps:
            lines.append(
                f"    pseudonymised: {ps['identifiers']:,} distinct identifiers, {ps['known']:,} from vault "
                f"{ps['vault_version'] or '(new)'}, {ps['hashed']:,} hashed in {ps['hash_seconds']:.1f} s")
    check = summary.get("truth_check")
    if check:
        if check["status"] == "match":
            lines.append(f"  truth check ({', '.join(check.get('checked', ['ingest']))}): rows, quarantine reasons, rule "
                         f"drops of all {check['files']} files and the event counts match the generator's truth")
        else:
            lines.append(f"  truth check: {check['status'].upper()}")
            lines += [f"    {d}" for d in check.get("differences", [])[:20]]
    return "\n".join(lines)
