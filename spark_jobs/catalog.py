"""SQL access to the published tables: a DuckDB catalog file per region, and Athena/Glue DDL for AWS.

    python -m spark_jobs.catalog refresh --lake LAKE --region REGION     # what publish and switch run
    python -m spark_jobs.catalog sql --catalog LAKE/catalog/REGION.duckdb [-c "SELECT ..."]   # make sql

`refresh` rebuilds, from the manifests under `published/` (spark_jobs/publish.py):
- `<lake>/catalog/<region>.duckdb`, views only (no data copied; DDL in sql/catalog/):
  - `main.<table>`: the current version of the latest published release (release ids sorted);
  - `release_<id>.<table>` (id sanitised: `release_2024_06`): the current version of each release;
  - `history.<table>`: every published version of every release, led by `release`, `run_id`, `is_current`;
  - tables `main.snds_published_versions`, `main.snds_published_tables`, `main.snds_published_gates`.
  It is built aside and swapped in whole (os.replace locally; on S3 built locally, then one PUT).
- `<lake>/catalog/athena.sql`: the Glue database `snds_<region>` with, per model table, an external
  table partitioned by release (each partition at that release's current version), a `<table>_latest`
  view and a `<table>_versions` table partitioned by (release, run_id) over every published version.
  Generated here, run in AWS (Athena console, or the Amazon provider's AthenaOperator).

Views over s3:// locations need DuckDB to reach S3 where the catalog is queried: `sql` here registers
the lake's S3 filesystem (spark_jobs.lakefs, the region's AWS configuration); elsewhere load httpfs.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

from spark_jobs import lakefs, sqlrender
from spark_jobs.lakefs import LakePath
from spark_jobs.steprun import parquet_files

log = logging.getLogger("snds.catalog")

#: Model types (DuckDB, sql/model/model.yaml) -> Hive/Athena DDL types.
ATHENA_TYPES = {"VARCHAR": "string", "INTEGER": "int", "BIGINT": "bigint", "DATE": "date", "DOUBLE": "double",
                "BOOLEAN": "boolean"}
_DECIMAL = re.compile(r"^DECIMAL\(\s*(\d+)\s*,\s*(\d+)\s*\)$")


class CatalogError(RuntimeError):
    """The catalog cannot be built (a current version's files are gone, an unknown column type...)."""


def catalog_path(lake_root, region: str) -> LakePath:
    return LakePath(lake_root) / "catalog" / f"{region}.duckdb"


def athena_path(lake_root) -> LakePath:
    return LakePath(lake_root) / "catalog" / "athena.sql"


def _sanitise(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "_", text.lower())


def schema_names(releases: list[str]) -> dict[str, str]:
    """release -> DuckDB schema (`2024-06` -> `release_2024_06`); ids that sanitise alike (`a.b`,
    `A-b`) get a suffix from their id's hash, so each release keeps its own schema."""
    plain = {r: "release_" + _sanitise(r) for r in releases}
    taken = list(plain.values())
    return {r: s if taken.count(s) == 1 else f"{s}_{hashlib.sha256(r.encode()).hexdigest()[:8]}"
            for r, s in plain.items()}


def glue_database(region: str) -> str:
    return "snds_" + _sanitise(region)


def athena_type(duckdb_type: str) -> str:
    """The Hive/Athena DDL type of a model column type (CatalogError for one without a mapping)."""
    text = duckdb_type.strip().upper()
    decimal = _DECIMAL.match(text)
    if decimal:
        return f"decimal({decimal.group(1)},{decimal.group(2)})"
    if text not in ATHENA_TYPES:
        raise CatalogError(f"model type {duckdb_type!r} has no Athena type (add it to catalog.ATHENA_TYPES)")
    return ATHENA_TYPES[text]


def _by_release(manifests: list[dict]) -> dict[str, dict]:
    """release -> {"current": manifest, "versions": [manifests]} (releases sorted)."""
    releases: dict[str, dict] = {}
    for m in manifests:
        entry = releases.setdefault(m["release"], {"current": None, "versions": []})
        entry["versions"].append(m)
        if m["current"]:
            entry["current"] = m
    return {r: releases[r] for r in sorted(releases) if releases[r]["current"]}


def _version_select(manifest: dict, table: str) -> str | None:
    """The SELECT of one version of a table, or None when its files are gone (though it had rows)."""
    spec = manifest["tables"][table]
    has_files = bool(parquet_files(spec["location"]))
    if not has_files and spec["rows"]:
        return None
    return sqlrender.render("catalog/version_select.sql", location=spec["location"], columns=spec["columns"],
                            has_files=has_files)


def _build(path: Path, releases: dict[str, dict], uses_s3: bool) -> dict:
    """Write the DuckDB catalog at `path` (a new file); returns what it holds."""
    import duckdb

    schemas = schema_names(list(releases))
    latest = list(releases)[-1] if releases else None
    unreadable = []
    con = duckdb.connect(str(path))
    try:
        if uses_s3:
            # Views are bound when created: DuckDB must read the files' schemas on S3 (no httpfs here).
            con.register_filesystem(lakefs.duckdb_s3_filesystem())
        for ddl in ("published_versions", "published_tables", "published_gates"):
            con.execute(sqlrender.render(f"catalog/{ddl}.sql"))
        history: dict[str, list[dict]] = {}
        for release, entry in releases.items():
            current = entry["current"]
            con.execute(sqlrender.render("catalog/schema.sql", schema=schemas[release]))
            for table in current["tables"]:
                select = _version_select(current, table)
                if select is None:
                    raise CatalogError(f"{current['tables'][table]['location']}: the current version of release "
                                       f"{release} ({current['run_id']}) has lost the files of {table}")
                con.execute(sqlrender.render("catalog/view.sql", schema=schemas[release], table=table, select=select))
                if release == latest:
                    con.execute(sqlrender.render("catalog/view.sql", schema="main", table=table, select=select))
            for m in entry["versions"]:
                readable = True
                for table in m["tables"]:
                    select = _version_select(m, table)
                    if select is None:
                        readable = False
                        unreadable.append(f"{release}/{m['run_id']}/{table}")
                        continue
                    history.setdefault(table, []).append(
                        {"release": release, "run_id": m["run_id"], "is_current": m["current"], "select": select})
                if not readable:
                    log.warning("release %s run %s: the tables whose files are gone are left out of history",
                                release, m["run_id"])
                con.execute("INSERT INTO main.snds_published_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [release, schemas[release], m["run_id"], m["current"], release == latest,
                             m["published_at"], m["code_version"], m["model"], m["report"],
                             (m.get("previous") or {}).get("run_id")])
                con.executemany("INSERT INTO main.snds_published_tables VALUES (?, ?, ?, ?, ?)",
                                [[release, m["run_id"], t, s["rows"], s["location"]] for t, s in m["tables"].items()])
                con.executemany("INSERT INTO main.snds_published_gates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                [[release, m["run_id"], gate, g["status"], *(g["totals"].get(k) for k in
                                  ("checks", "passed", "failed", "warnings", "skipped")), g["warnings"]]
                                 for gate, g in m["gates"].items()])
        con.execute(sqlrender.render("catalog/schema.sql", schema="history"))
        for table, versions in sorted(history.items()):
            con.execute(sqlrender.render("catalog/history_view.sql", table=table, versions=versions))
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return {"releases": list(releases), "latest_release": latest, "schemas": schemas,
            "versions": sum(len(e["versions"]) for e in releases.values()), "unreadable": unreadable}


def athena_ddl(lake_root, region: str, manifests: list[dict]) -> str:
    """The Athena/Glue DDL of the published tables (`manifests`: `publish.list_versions`' entries):
    per model table an external table partitioned by release, each partition at its release's current
    version (ADD IF NOT EXISTS then SET LOCATION, so re-running it after a publish moves the partition),
    a `<table>_latest` view, and `<table>_versions` partitioned by (release, run_id)."""
    releases = _by_release(manifests)
    if not releases:
        return ""
    database = glue_database(region)
    base = str(LakePath(lake_root) / "model") + "/"
    latest = releases[list(releases)[-1]]["current"]
    statements = [sqlrender.render("catalog/athena_database.sql", database=database)]
    for table, spec in latest["tables"].items():
        columns = [{"name": c["name"], "type": athena_type(c["type"])} for c in spec["columns"]]
        statements.append(sqlrender.render("catalog/athena_table.sql", database=database, table=table,
                                           columns=columns, partitions=["release"], location=base))
        for release, entry in releases.items():
            if table not in entry["current"]["tables"]:
                continue
            where = {"database": database, "table": table, "spec": [("release", release)],
                     "location": entry["current"]["tables"][table]["location"].rstrip("/") + "/"}
            statements.append(sqlrender.render("catalog/athena_add_partition.sql", **where))
            statements.append(sqlrender.render("catalog/athena_set_location.sql", **where))
        statements.append(sqlrender.render("catalog/athena_latest_view.sql", database=database, table=table,
                                           release=latest["release"]))
        statements.append(sqlrender.render("catalog/athena_table.sql", database=database, table=f"{table}_versions",
                                           columns=columns, partitions=["release", "run_id"], location=base))
        for release, entry in releases.items():
            for m in entry["versions"]:
                if table in m["tables"]:
                    statements.append(sqlrender.render(
                        "catalog/athena_add_partition.sql", database=database, table=f"{table}_versions",
                        spec=[("release", release), ("run_id", m["run_id"])],
                        location=m["tables"][table]["location"].rstrip("/") + "/"))
    header = (f"-- Athena/Glue DDL of region {region}'s published tables, generated by spark_jobs.catalog from\n"
              f"-- {LakePath(lake_root) / 'published'}; run it in order (Athena runs one statement at a time).\n")
    return header + "".join(f"\n{s};\n" for s in statements)


def _published_state(manifests: list[dict]) -> list[tuple]:
    return sorted((m["release"], m["run_id"], m["current"], m["published_at"]) for m in manifests)


#: Rebuilds when the manifests changed while the catalog was built (a publish of another release).
REFRESH_ATTEMPTS = 3


def refresh(lake_root, region: str) -> dict:
    """Rebuild the region's DuckDB catalog and Athena DDL from the published manifests; returns their
    locations and what they hold. Each is swapped in whole. Two publishes of a region's releases may
    run at once: if the manifests changed while it was building, the catalog is built again, so the
    last one swapped in reflects every switch."""
    from spark_jobs import publish

    target, ddl = catalog_path(lake_root, region), athena_path(lake_root)
    manifests = publish.list_versions(lake_root)
    for _ in range(REFRESH_ATTEMPTS):
        releases = _by_release(manifests)
        uses_s3 = any(m["model"].startswith("s3://") for m in manifests)
        # Built in a directory of its own: beside the target locally (one os.replace), else local.
        local_parent = None if target.is_s3 else target.local().parent
        if local_parent is not None:
            local_parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".catalog-build-", dir=local_parent) as tmp:
            built_file = Path(tmp) / target.name
            built = _build(built_file, releases, uses_s3)
            if target.is_s3:
                lakefs.write_bytes(target, built_file.read_bytes())
            else:
                os.replace(built_file, target.local())
        lakefs.write_bytes(ddl, athena_ddl(lake_root, region, manifests).encode("utf-8"))
        latest = publish.list_versions(lake_root)
        if _published_state(latest) == _published_state(manifests):
            break
        manifests = latest
    log.info("catalog %s: %d releases, %d versions (latest %s); Athena DDL %s", target, len(built["releases"]),
             built["versions"], built["latest_release"], ddl)
    return {"catalog": str(target), "athena_ddl": str(ddl), **built}


def open_catalog(location):
    """A read-only DuckDB connection to a catalog (local path, or s3:// downloaded to a temporary file
    first), with the lake's S3 filesystem registered when its views read s3://."""
    import duckdb

    loc = LakePath(location)
    if loc.is_s3:
        tmp = tempfile.NamedTemporaryFile(prefix="snds-catalog-", suffix=".duckdb", delete=False)
        tmp.write(lakefs.read_bytes(loc))
        tmp.close()
        path = tmp.name
    else:
        path = str(loc.local())
        if not os.path.isfile(path):
            raise CatalogError(f"{path}: no catalog (nothing published yet in this region?)")
    con = duckdb.connect(path, read_only=True)
    if loc.is_s3:
        os.unlink(path)  # the open connection keeps it readable
    ((on_s3,),) = con.execute("SELECT count(*) FROM duckdb_views() WHERE sql LIKE '%s3://%'").fetchall()
    if on_s3:
        con.register_filesystem(lakefs.duckdb_s3_filesystem())
    return con


def _run(con, statement: str) -> bool:
    """Run one statement and print its result as a table; False (message on stderr) if it failed."""
    import duckdb

    try:
        rel = con.sql(statement)
    except duckdb.Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    if rel is not None:
        rel.show(max_rows=1000, max_width=200)
    return True


def _list_tables(con) -> None:
    con.sql("SELECT schema_name AS schema, view_name AS name, 'view' AS kind FROM duckdb_views() WHERE NOT internal "
            "UNION ALL SELECT schema_name, table_name, 'table' FROM duckdb_tables() "
            "ORDER BY \"schema\" = 'main' DESC, \"schema\" = 'history', 1, 2").show(max_rows=10000)


def shell(con, lines, prompt: bool) -> int:
    """A small SQL prompt: statements end with `;`, `.tables` lists the views, `.quit` leaves.
    `lines` is an iterator of input lines (stdin, or `input()` on a terminal)."""
    buffer, failed = [], False
    for line in lines:
        stripped = line.strip()
        if not buffer and stripped in (".quit", ".exit"):
            break
        if not buffer and stripped == ".tables":
            _list_tables(con)
            continue
        if not buffer and stripped in (".help", "help"):
            print("SQL statements end with ';'. .tables lists the views, .quit leaves.")
            continue
        buffer.append(line)
        if stripped.endswith(";"):
            failed |= not _run(con, "\n".join(buffer))
            buffer = []
    if "".join(buffer).strip():
        failed |= not _run(con, "\n".join(buffer))
    return 1 if failed and not prompt else 0


def _prompt_lines():
    """Lines from a terminal with a prompt that shows whether a statement is being continued."""
    print("SNDS catalog: SQL statements end with ';'; .tables lists the views; .quit leaves.")
    pending = False
    while True:
        try:
            line = input("  ...> " if pending else "snds> ")
        except EOFError:
            print()
            return
        stripped = line.strip()
        if pending:
            pending = not stripped.endswith(";")
        else:
            pending = bool(stripped) and not stripped.startswith(".") and not stripped.endswith(";")
        yield line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="spark_jobs.catalog", description="The region's SQL catalog of published tables")
    sub = p.add_subparsers(dest="command", required=True)
    build = sub.add_parser("refresh", help="rebuild the DuckDB catalog and the Athena DDL from the manifests")
    build.add_argument("--lake", required=True, help="the region's lake root (local path or s3:// URI)")
    build.add_argument("--region", required=True)
    query = sub.add_parser("sql", help="query the catalog (read-only): -c runs one query, else a prompt")
    query.add_argument("--catalog", required=True, help="the catalog file (<lake>/catalog/<region>.duckdb)")
    query.add_argument("-c", "--command", dest="query", help="SQL to run; its result is printed as a table")
    args = p.parse_args(argv)

    if args.command == "refresh":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        done = refresh(args.lake, args.region)
        print(f"catalog {done['catalog']}: releases {', '.join(done['releases']) or 'none'} "
              f"(latest {done['latest_release']}), {done['versions']} versions; Athena DDL {done['athena_ddl']}")
        return 0
    try:
        con = open_catalog(args.catalog)
    except CatalogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        if args.query is not None:
            return 0 if _run(con, args.query) else 1
        interactive = sys.stdin.isatty()
        return shell(con, _prompt_lines() if interactive else sys.stdin, prompt=interactive)
    finally:
        con.close()


if __name__ == "__main__":
    sys.exit(main())
