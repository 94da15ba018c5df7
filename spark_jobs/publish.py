"""Publish: write-audit-publish of a run's model, by a manifest switch; past versions stay readable.

A run writes its model under its own directory (`model/release=R/run=<run>/`, never replaced by another
run), the quality gates audit it, and `publish` makes it the release's current version in one atomic
step:

    published/release=R/versions/<run>.json   the manifest of every version ever published (kept)
    published/release=R/CURRENT.json          the current version's manifest (a byte copy of one of them)

`CURRENT.json` is rewritten whole (aside then renamed locally, one PUT on S3): a reader sees the old
version or the new one, never a mix. Nothing is deleted, so any past release or run can still be
queried (the catalog's `history` schema, `list_versions`); `switch` makes an older version current again
(rollback). Then the region's SQL catalog is refreshed (spark_jobs/catalog.py).

    publish(lake_root, region=, release=, run_id=, run_dir=, model_zone=, report_html=)   # the DAG's task
    python -m spark_jobs.publish --lake LAKE --region REGION list [--release R] [--json]
    python -m spark_jobs.publish --lake LAKE --region REGION show --release R [--run-id ID] [--json]
    python -m spark_jobs.publish --lake LAKE --region REGION switch --release R --run-id ID

Locations are local paths or s3:// URIs (all access through `lakefs`). See docs/publish-and-catalog.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from spark_jobs import lakefs
from spark_jobs.lakefs import LakePath
from spark_jobs.report import code_version, now_utc
from spark_jobs.steprun import parquet_files, parquet_footer, parquet_rows, run_tag
from spark_jobs.uris import normalize

log = logging.getLogger("snds.publish")

MANIFEST_VERSION = 1
#: The gates whose reports a publication records; gate_model is required, gate_clean checked if present.
GATES = ("gate_clean", "gate_model")
#: Manifest fields that say when and over what a content was first published (kept on a re-publish).
FIRST_PUBLICATION = ("published_at", "previous")


class PublishError(RuntimeError):
    """Publication refused or failed: the message names the file or table at fault (never row values)."""


def release_dir(lake_root, release: str) -> LakePath:
    return LakePath(lake_root) / "published" / f"release={release}"


def current_path(lake_root, release: str) -> LakePath:
    return release_dir(lake_root, release) / "CURRENT.json"


def version_path(lake_root, release: str, run_id: str) -> LakePath:
    return release_dir(lake_root, release) / "versions" / f"{run_tag(run_id)}.json"


def _absolute(location) -> LakePath:
    """Manifests name absolute locations (the catalog is opened from anywhere)."""
    return LakePath(normalize(str(location)))


def _read_report(path: LakePath, release: str, run_id: str, required: bool) -> dict | None:
    """A step report that exists, succeeded and belongs to this run; None if absent and not required."""
    if not lakefs.is_file(path):
        if required:
            raise PublishError(f"{path}: missing: only a run whose model passed its gates can be published")
        return None
    report = lakefs.read_json(path)
    if report.get("status") != "success":
        raise PublishError(f"{path}: status {report.get('status')!r}, not success: nothing is published")
    if (report.get("release"), report.get("run_id")) != (release, run_id):
        raise PublishError(f"{path}: written for release {report.get('release')!r} run {report.get('run_id')!r}, "
                           f"not release {release!r} run {run_id!r}")
    return report


def _gate_summary(report: dict) -> dict:
    return {"status": report["status"], "totals": report.get("totals", {}),
            "warnings": [c["name"] for c in report.get("checks", [])
                         if c.get("severity") == "warning" and c.get("status") == "fail"]}


def _model_tables(model: LakePath, model_report: dict, report_path: LakePath) -> dict:
    """{table: {location, rows, columns}} of the model at `model` (its current location), every table of
    sql/model/model.yaml present, with the columns it declares and the rows the model step reported."""
    from spark_jobs.model import load_model_schema

    reported = model_report.get("tables", {})
    tables = {}
    for table, spec in load_model_schema().items():
        location = model / table
        files = parquet_files(location)
        if not files:
            raise PublishError(f"{location}: model table {table} has no Parquet file")
        columns = [{"name": c["name"], "type": c["type"]} for c in spec["columns"]]
        written = parquet_footer(files[0]).schema.names
        if written != [c["name"] for c in columns]:
            raise PublishError(f"{files[0]}: columns {written} differ from sql/model/model.yaml's {table}")
        rows = parquet_rows(location)
        if table not in reported or reported[table].get("rows") != rows:
            raise PublishError(f"{location}: {rows} rows in the Parquet footers, {report_path} reports "
                               f"{reported.get(table, {}).get('rows')} for {table}")
        tables[table] = {"location": str(location), "rows": rows, "columns": columns}
    return tables


def read_manifest(location) -> dict | None:
    return lakefs.read_json(location) if lakefs.is_file(location) else None


def current_manifest(lake_root, release: str) -> dict | None:
    """The manifest of the release's current version, or None if the release was never published."""
    return read_manifest(current_path(lake_root, release))


def published_releases(lake_root) -> list[str]:
    """The releases with a current version, sorted by id."""
    found = []
    for entry, is_dir in lakefs.list_entries(LakePath(lake_root) / "published"):
        if is_dir and entry.name.startswith("release=") and lakefs.is_file(entry / "CURRENT.json"):
            found.append(entry.name[len("release="):])
    return sorted(found)


def list_versions(lake_root, release: str | None = None) -> list[dict]:
    """Every published version (its manifest plus `current`: whether it is its release's current one),
    by release then publication time."""
    versions = []
    for rel in [release] if release else published_releases(lake_root):
        current = current_manifest(lake_root, rel)
        for path in lakefs.list_files(release_dir(lake_root, rel) / "versions", ".json", recursive=False):
            if path.name.startswith("."):
                continue  # a manifest being written
            manifest = lakefs.read_json(path)
            manifest["current"] = bool(current) and manifest["run_id"] == current["run_id"]
            versions.append(manifest)
    return sorted(versions, key=lambda m: (m["release"], m["published_at"], m["run_id"]))


def previous_release_manifest(lake_root, release: str) -> dict | None:
    """The current manifest of the latest published release whose id sorts before `release` (the
    baseline of the drift checks), or None."""
    earlier = [r for r in published_releases(lake_root) if r < release]
    return current_manifest(lake_root, earlier[-1]) if earlier else None


def _encode(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2) + "\n").encode("utf-8")


def build_manifest(lake_root, *, region: str, release: str, run_id: str, run_dir, model_zone,
                   report_html=None) -> dict:
    """The audited manifest of a run's model (PublishError if the run is not publishable)."""
    run_dir = LakePath(run_dir)
    steps = run_dir / "steps"
    model_report_path = steps / "model.json"
    model_report = _read_report(model_report_path, release, run_id, required=True)
    gates = {}
    for gate in GATES:
        report = _read_report(steps / f"{gate}.json", release, run_id, required=gate == "gate_model")
        if report is not None:
            gates[gate] = _gate_summary(report)
    model = _absolute(lakefs.current(model_zone))
    tables = _model_tables(model, model_report, model_report_path)
    current = current_manifest(lake_root, release)
    return {
        "manifest_version": MANIFEST_VERSION,
        "region": region,
        "release": release,
        "run_id": run_id,
        "published_at": now_utc(),
        "code_version": code_version(),
        "model": str(model),
        "tables": tables,
        "gates": gates,
        "report": str(_absolute(report_html)) if report_html else None,
        "previous": ({"run_id": current["run_id"], "published_at": current["published_at"]}
                     if current and current["run_id"] != run_id else None),
    }


def _write_step_report(run_dir, report: dict, t0: float) -> None:
    report["seconds"] = round(time.monotonic() - t0, 3)
    lakefs.write_json(LakePath(run_dir) / "steps" / "publish.json", report)


def publish(lake_root, *, region: str, release: str, run_id: str, run_dir, model_zone, report_html=None) -> dict:
    """Publish an audited run's model as the release's current version, refresh the catalog and write
    `<run_dir>/steps/publish.json` (also on failure, then re-raise). Returns the published manifest.

    Re-publishing a version keeps its first `published_at` and `previous` when nothing else changed, so
    the manifest is rewritten byte for byte (idempotent)."""
    from spark_jobs import catalog

    t0 = time.monotonic()
    report = {"step": "publish", "status": "failed", "region": region, "release": release, "run_id": run_id,
              "started_at": now_utc()}
    try:
        manifest = build_manifest(lake_root, region=region, release=release, run_id=run_id, run_dir=run_dir,
                                  model_zone=model_zone, report_html=report_html)
        version, pointer = version_path(lake_root, release, run_id), current_path(lake_root, release)
        earlier = read_manifest(version)
        if earlier and all(earlier.get(k) == v for k, v in manifest.items() if k not in FIRST_PUBLICATION):
            manifest.update({k: earlier[k] for k in FIRST_PUBLICATION})
        replaced = current_manifest(lake_root, release)
        replaced = replaced if replaced and replaced["run_id"] != run_id else None  # a re-publish replaces nothing
        data = _encode(manifest)
        # The version first: CURRENT never names a manifest that is not there.
        lakefs.write_bytes(version, data)
        lakefs.write_bytes(pointer, data)
        log.info("published release %s run %s (was %s): %s", release, run_id,
                 replaced["run_id"] if replaced else "unpublished", pointer)
        report.update(manifest=str(pointer), version=str(version),
                      previous=replaced["run_id"] if replaced else None,
                      totals={"tables": len(manifest["tables"]),
                              "rows": sum(t["rows"] for t in manifest["tables"].values())})
        refreshed = catalog.refresh(lake_root, region)
        report.update(catalog=refreshed["catalog"], athena_ddl=refreshed["athena_ddl"], status="success")
    except Exception as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        log.error("publish of release %s run %s failed: %s", release, run_id, report["error"])
        raise
    finally:
        _write_step_report(run_dir, report, t0)
    return manifest


def switch(lake_root, *, region: str, release: str, run_id: str) -> dict:
    """Make an already published version of the release current again (rollback), then refresh the
    catalog. Refused for a run never published, or whose model files are gone."""
    from spark_jobs import catalog

    version = version_path(lake_root, release, run_id)
    manifest = read_manifest(version)
    if manifest is None:
        raise PublishError(f"{version}: run {run_id!r} was never published for release {release!r}")
    for table, spec in manifest["tables"].items():
        if not parquet_files(spec["location"]):
            raise PublishError(f"{spec['location']}: the files of {table} are gone; version not switched")
    replaced = current_manifest(lake_root, release)
    lakefs.write_bytes(current_path(lake_root, release), lakefs.read_bytes(version))
    log.info("release %s: current version switched from %s to %s", release,
             replaced["run_id"] if replaced else "none", run_id)
    refreshed = catalog.refresh(lake_root, region)
    return {"release": release, "run_id": run_id, "previous": replaced["run_id"] if replaced else None,
            "manifest": str(current_path(lake_root, release)), **refreshed}


def _describe(manifest: dict) -> str:
    lines = [f"release {manifest['release']} · run {manifest['run_id']}"
             + (" · CURRENT" if manifest.get("current") else ""),
             f"  published {manifest['published_at']} by {manifest['code_version']}"
             + (f", replacing run {manifest['previous']['run_id']}" if manifest.get("previous") else ""),
             f"  model {manifest['model']}"]
    if manifest.get("report"):
        lines.append(f"  report {manifest['report']}")
    for gate, g in manifest["gates"].items():
        totals = ", ".join(f"{k} {v}" for k, v in g["totals"].items())
        warned = f"; warnings: {', '.join(g['warnings'])}" if g["warnings"] else ""
        lines.append(f"  {gate}: {g['status']} ({totals}){warned}")
    for table, t in manifest["tables"].items():
        lines.append(f"    {table:<20} {t['rows']:>12,} rows")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="spark_jobs.publish", description="Published versions of a region's releases")
    p.add_argument("--lake", required=True, help="the region's lake root (local path or s3:// URI)")
    p.add_argument("--region", required=True, help="region name (the catalog's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    sub = p.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="every published version, the current ones marked")
    listing.add_argument("--release")
    show = sub.add_parser("show", help="a release's current manifest, or one version's")
    show.add_argument("--release", required=True)
    show.add_argument("--run-id")
    back = sub.add_parser("switch", help="make an already published version current again (rollback)")
    back.add_argument("--release", required=True)
    back.add_argument("--run-id", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        if args.command == "list":
            versions = list_versions(args.lake, args.release)
            if args.json:
                print(json.dumps(versions, indent=2))
            elif not versions:
                print(f"{args.lake}: nothing published" + (f" for release {args.release}" if args.release else ""))
            for m in [] if args.json else versions:
                print(f"{m['release']:<16} {m['run_id']:<40} {m['published_at']}  "
                      f"{sum(t['rows'] for t in m['tables'].values()):>12,} rows{'  CURRENT' if m['current'] else ''}")
        elif args.command == "show":
            if args.run_id:
                manifest = read_manifest(version_path(args.lake, args.release, args.run_id))
                current = current_manifest(args.lake, args.release)
                if manifest is not None:
                    manifest["current"] = bool(current) and current["run_id"] == manifest["run_id"]
            else:
                manifest = current_manifest(args.lake, args.release)
                if manifest is not None:
                    manifest["current"] = True
            if manifest is None:
                raise PublishError(f"release {args.release}" + (f" run {args.run_id}" if args.run_id else "")
                                   + " is not published")
            print(json.dumps(manifest, indent=2) if args.json else _describe(manifest))
        else:
            done = switch(args.lake, region=args.region, release=args.release, run_id=args.run_id)
            print(json.dumps(done, indent=2) if args.json else
                  f"release {done['release']}: run {done['run_id']} is current (was {done['previous']}); "
                  f"catalog {done['catalog']}")
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
