"""The run audit database: who ran which release, with which code, configuration and input bytes, what
each step did and what each quality check found.

Every run of the release DAG is recorded twice: `prepare_run` opens the record (status `running`),
`summarize` completes it from the run's summary (spark_jobs/report.py). The same SQLAlchemy Core code
writes a SQLite file locally and the region's PostgreSQL in production (docs/audit.md).

    from spark_jobs.audit import config_hash, open_audit
    with open_audit("sqlite:///var/audit/local/audit.db") as audit:      # or a plain path, or
        audit.record_run_start(region=..., release=..., run_id=..., ...)  # postgresql+psycopg2://...
        audit.record_summary(summary, summary_path=...)
        audit.list_runs(region="local", limit=20)
        audit.run_record("manual__2026-01-01T00:00:00+00:00")

    python -m spark_jobs.audit --url URL list [--region R] [--release R] [--limit N] [--json]
    python -m spark_jobs.audit --url URL show RUN_ID [--region R] [--release R] [--json]
    (--url defaults to $SNDS_AUDIT_URL; exit 2 for an unknown or ambiguous run)

Only what the step reports hold is recorded: counts, timings, file names and checksums, table, rule
and check names. Never a row value, and never a credential: URLs are shown with the password hidden.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import sys
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

#: Version of the tables below; recorded in `audit_schema_version`. A database written by newer code
#: (a higher version) is refused rather than half-understood.
SCHEMA_VERSION = 2
log = logging.getLogger("snds.audit")
URL_ENV = "SNDS_AUDIT_URL"

metadata = sa.MetaData()
_RUN_KEY = ("region", "release", "run_id")


def _run_key_columns() -> list[sa.Column]:
    return [sa.Column("region", sa.String(64), primary_key=True),
            sa.Column("release", sa.String(64), primary_key=True),
            sa.Column("run_id", sa.String(250), primary_key=True)]


def _run_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(list(_RUN_KEY), [f"audit_runs.{c}" for c in _RUN_KEY], ondelete="CASCADE")


schema_version = sa.Table(
    "audit_schema_version", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

runs = sa.Table(
    "audit_runs", metadata,
    *_run_key_columns(),
    sa.Column("dag_id", sa.String(250)),
    sa.Column("trigger", sa.String(32)),          # manual | schedule | asset
    sa.Column("run_type", sa.String(32)),         # Airflow's: manual | scheduled | backfill | asset_triggered
    sa.Column("triggered_by", sa.String(250)),    # the Airflow user, when Airflow knows it
    sa.Column("engine", sa.String(64)),
    sa.Column("code_version", sa.String(120)),
    sa.Column("config_hash", sa.String(64)),
    sa.Column("input_uri", sa.Text),
    sa.Column("status", sa.String(16), nullable=False),  # running | success | failed | dry_run
    sa.Column("dry_run", sa.Boolean),
    sa.Column("steps_selected", sa.Text),         # JSON list, as the run's Params gave it
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("summary_path", sa.Text),
    sa.Column("truth_check", sa.String(16)),      # match | mismatch | not_checked (synthetic deliveries)
    sa.Column("published", sa.Boolean, nullable=False),
    sa.Column("published_manifest", sa.Text),   # published/release=R/versions/<run>.json
    # The delivery profile the ingest step ran with (JSON: its settings, and what detection saw for
    # `auto`); schema version 2.
    sa.Column("delivery_profile", sa.Text),
    sa.Index("ix_audit_runs_started_at", "started_at"),
)

steps = sa.Table(
    "audit_steps", metadata,
    *_run_key_columns(),
    sa.Column("step", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16)),
    sa.Column("engine", sa.String(64)),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("seconds", sa.Float),
    sa.Column("rows_read", sa.BigInteger),
    sa.Column("rows_written", sa.BigInteger),
    sa.Column("quarantined", sa.BigInteger),
    sa.Column("dropped_by_rule", sa.BigInteger),
    sa.Column("totals", sa.Text),                 # the report's whole `totals` (JSON): counts only
    sa.Column("error", sa.Text),
    _run_fk(),
)

inputs = sa.Table(
    "audit_inputs", metadata,
    *_run_key_columns(),
    sa.Column("file", sa.String(250), primary_key=True),
    sa.Column("table_name", sa.String(64)),
    sa.Column("year", sa.Integer),
    sa.Column("bytes", sa.BigInteger),
    sa.Column("sha256", sa.String(64)),
    sa.Column("rows_read", sa.BigInteger),
    sa.Column("rows_written", sa.BigInteger),
    sa.Column("quarantined", sa.BigInteger),
    sa.Column("dropped_by_rule", sa.BigInteger),
    _run_fk(),
)

attrition = sa.Table(
    "audit_attrition", metadata,
    *_run_key_columns(),
    sa.Column("step", sa.String(64), primary_key=True),
    sa.Column("table_name", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),     # quarantine | rule | nulled (cells, row kept)
    sa.Column("reason", sa.String(120), primary_key=True),  # quarantine reason or rule name
    sa.Column("rows", sa.BigInteger, nullable=False),
    _run_fk(),
)

checks = sa.Table(
    "audit_checks", metadata,
    *_run_key_columns(),
    sa.Column("gate", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(160), primary_key=True),
    sa.Column("kind", sa.String(32)),
    sa.Column("table_name", sa.String(64)),
    sa.Column("severity", sa.String(16)),
    sa.Column("status", sa.String(16)),           # pass | fail | skipped
    sa.Column("observed", sa.BigInteger),
    sa.Column("threshold_kind", sa.String(16)),   # threshold (a count) | max_rate (a share of total)
    sa.Column("threshold", sa.Float),
    sa.Column("total", sa.BigInteger),
    sa.Column("description", sa.Text),
    sa.Column("message", sa.Text),
    _run_fk(),
)

CHILD_TABLES = (steps, inputs, attrition, checks)


class AuditError(RuntimeError):
    """The audit database cannot be used (schema version, unknown or ambiguous run)."""


class AuditSchemaError(AuditError):
    pass


class RunNotFound(AuditError, LookupError):
    """No run, or several, match the given run id (and region/release)."""


# --- small conversions -----------------------------------------------------------------------------
def _timestamp(value) -> dt.datetime | None:
    """An aware UTC datetime from an ISO string (reports) or a datetime; naive means UTC."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def _iso(value) -> str | None:
    """The same instant on both backends: SQLite hands back naive UTC, PostgreSQL an aware datetime."""
    value = _timestamp(value)
    return value.isoformat(timespec="seconds") if value else None


def _int(value) -> int | None:
    return None if value is None else int(value)


def _json(value) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def normalise_url(url: str) -> sa.URL:
    """A SQLAlchemy URL from a URL or a plain SQLite path. Airflow's `Connection.get_uri()` spells
    PostgreSQL `postgres://`, which SQLAlchemy 2 no longer accepts."""
    text = str(url)
    if "://" not in text:
        return sa.URL.create("sqlite", database=str(Path(text).expanduser().resolve()))
    if text.startswith("postgres://"):
        text = "postgresql+psycopg2://" + text[len("postgres://"):]
    return make_url(text)


def config_hash(paths) -> str:
    """SHA-256 over configuration files (sorted by path; each file's name, size and content), so two
    runs with the same settings have the same hash wherever the checkout lives."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        content = path.read_bytes()
        digest.update(f"{path.name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


# --- what a summary holds --------------------------------------------------------------------------
def _step_rows(key: dict, summary_steps: dict) -> list[dict]:
    rows = []
    for name, report in summary_steps.items():
        totals = report.get("totals") or {}
        rows.append({**key, "step": name, "status": report.get("status"), "engine": report.get("engine"),
                     "started_at": _timestamp(report.get("started_at")), "seconds": report.get("seconds"),
                     "rows_read": _int(totals.get("rows_read")), "rows_written": _int(totals.get("rows_written")),
                     "quarantined": _int(totals.get("quarantined")),
                     "dropped_by_rule": _int(totals.get("dropped_by_rule")),
                     "totals": _json(totals) if totals else None, "error": report.get("error")})
    return rows


def _input_rows(key: dict, ingest: dict | None) -> list[dict]:
    rows = []
    for table, t in sorted(((ingest or {}).get("tables") or {}).items()):
        for f in t.get("files", []):
            rows.append({**key, "file": f["file"], "table_name": table, "year": _int(f.get("year")),
                         "bytes": _int(f.get("bytes")), "sha256": f.get("sha256"),
                         "rows_read": _int(f.get("rows_read")), "rows_written": _int(f.get("rows")),
                         "quarantined": _int(f.get("quarantined")), "dropped_by_rule": _int(f.get("dropped"))})
    return rows


def _attrition_rows(key: dict, summary_steps: dict) -> list[dict]:
    """Rows lost per step, table and cause: ingest's quarantine per table and reason (from its file
    entries: the step's own `by_reason` is not per table) and every step's rows dropped per rule and
    table. Zero counts are left out."""
    counts: dict[tuple, int] = {}

    def add(step, table, kind, reason, n):
        if n:
            k = (step, table, kind, reason)
            counts[k] = counts.get(k, 0) + int(n)

    for name, report in summary_steps.items():
        if name == "ingest":
            for table, t in (report.get("tables") or {}).items():
                for f in t.get("files", []):
                    for reason, n in (f.get("quarantine_reasons") or {}).items():
                        add(name, table, "quarantine", reason, n)
                    # Cells set to NULL (row kept): the column and why, e.g. GRC_RET:bad_boolean.
                    for cell in f.get("nulled_cells") or []:
                        add(name, table, "nulled", f"{cell['column']}:{cell['reason']}", cell["cells"])
        for rule, tables in (report.get("dropped_by_rule") or {}).items():
            if isinstance(tables, dict):  # {rule: {table: n}}; a per-table report's {rule: n} is not this
                for table, n in tables.items():
                    add(name, table, "rule", rule, n)
    return [{**key, "step": s, "table_name": t, "kind": k, "reason": r, "rows": n}
            for (s, t, k, r), n in sorted(counts.items())]


def _threshold(value) -> tuple[str | None, float | None]:
    """quality.py writes {"threshold": n} or {"max_rate": r}; a bare number is a count threshold."""
    if value is None:
        return None, None
    if isinstance(value, dict):
        ((kind, limit),) = value.items()
        return kind, float(limit)
    return "threshold", float(value)


def _check_rows(key: dict, summary_steps: dict) -> list[dict]:
    rows = []
    for gate, report in summary_steps.items():
        for c in report.get("checks") or []:
            kind, limit = _threshold(c.get("threshold"))
            rows.append({**key, "gate": gate, "name": c["name"], "kind": c.get("kind"), "table_name": c.get("table"),
                         "severity": c.get("severity"), "status": c.get("status"), "observed": _int(c.get("observed")),
                         "threshold_kind": kind, "threshold": limit, "total": _int(c.get("total")),
                         "description": c.get("description"), "message": c.get("message")})
    return rows


# --- the database ----------------------------------------------------------------------------------
class AuditDB:
    """One audit database (SQLite file or PostgreSQL): tables created if missing, schema version checked."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=True)
        self._check_schema()

    def __repr__(self) -> str:
        return f"AuditDB({self.url})"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> AuditDB:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_schema(self) -> None:
        with self.engine.begin() as conn:
            found = None
            if sa.inspect(conn).has_table(schema_version.name):
                found = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
            if found is not None and found > SCHEMA_VERSION:
                raise AuditSchemaError(
                    f"audit database {self.url} has schema version {found}, newer than this code's "
                    f"{SCHEMA_VERSION}: run a newer snds-lake (nothing was written)")
            metadata.create_all(conn)
            if found is not None and found < SCHEMA_VERSION:
                self._migrate(conn, found)
            if found is None:
                conn.execute(schema_version.insert().values(version=SCHEMA_VERSION,
                                                            applied_at=dt.datetime.now(dt.timezone.utc)))

    def _migrate(self, conn, found: int) -> None:
        """Bring an older database to SCHEMA_VERSION in place (columns are only ever added)."""
        if found < 2:
            conn.execute(sa.text(f"ALTER TABLE {runs.name} ADD COLUMN delivery_profile TEXT"))
        conn.execute(schema_version.insert().values(version=SCHEMA_VERSION, applied_at=dt.datetime.now(dt.timezone.utc)))
        log.info("audit database %s: schema version %d -> %d", self.url, found, SCHEMA_VERSION)

    # -- writing
    @staticmethod
    def _delete_children(conn, key: dict) -> None:
        for table in CHILD_TABLES:
            conn.execute(table.delete().where(*(table.c[k] == key[k] for k in _RUN_KEY)))

    def record_run_start(self, *, region: str, release: str, run_id: str, dag_id: str | None, trigger: str | None,
                         run_type: str | None, triggered_by: str | None, engine: str | None,
                         code_version: str | None, config_hash: str | None, input_uri: str | None,
                         started_at) -> None:
        """Open a run's record (status running). A second call for the same run (a cleared and re-run
        prepare_run) starts the record over."""
        key = {"region": region, "release": release, "run_id": run_id}
        row = {**key, "dag_id": dag_id, "trigger": trigger, "run_type": run_type, "triggered_by": triggered_by,
               "engine": engine, "code_version": code_version, "config_hash": config_hash, "input_uri": input_uri,
               "status": "running", "dry_run": None, "steps_selected": None, "started_at": _timestamp(started_at),
               "finished_at": None, "summary_path": None, "truth_check": None, "published": False,
               "published_manifest": None}
        with self.engine.begin() as conn:
            self._delete_children(conn, key)
            conn.execute(runs.delete().where(*(runs.c[k] == key[k] for k in _RUN_KEY)))
            conn.execute(runs.insert().values(row))

    def record_summary(self, summary: dict, *, summary_path: str | None = None) -> None:
        """Complete a run's record from its summary, in one transaction: the run's facts (those the
        summary lacks are kept from record_run_start), its steps, input files, attrition and checks
        (replaced: recording the same summary twice gives the same rows)."""
        missing = [k for k in _RUN_KEY if not summary.get(k)]
        if missing:
            raise ValueError(f"summary lacks {', '.join(missing)}: not a run summary")
        key = {k: summary[k] for k in _RUN_KEY}
        summary_steps = summary.get("steps") or {}
        publish = summary_steps.get("publish") or {}
        published = publish.get("status") == "success"
        step_starts = [t for t in (_timestamp(r.get("started_at")) for r in summary_steps.values()) if t]
        facts = {"dag_id": summary.get("dag_id"), "trigger": summary.get("trigger"),
                 "run_type": summary.get("run_type"), "triggered_by": summary.get("triggered_by"),
                 "engine": summary.get("engine"), "code_version": summary.get("code_version"),
                 "config_hash": summary.get("config_hash"), "input_uri": summary.get("input"),
                 "steps_selected": _json(summary.get("steps_selected")),
                 "started_at": _timestamp(summary.get("started_at")),
                 "delivery_profile": _json((summary_steps.get("ingest") or {}).get("profile"))}
        with self.engine.begin() as conn:
            where = [runs.c[k] == key[k] for k in _RUN_KEY]
            existing = conn.execute(sa.select(runs).where(*where)).mappings().first()
            if existing:
                facts = {k: v if v is not None else existing[k] for k, v in facts.items()}
            if facts["started_at"] is None and step_starts:
                facts["started_at"] = min(step_starts)
            row = {**facts, "status": summary.get("status") or "failed", "dry_run": bool(summary.get("dry_run")),
                   "finished_at": _timestamp(summary.get("written_at")), "summary_path": summary_path,
                   "truth_check": (summary.get("truth_check") or {}).get("status"), "published": published,
                   # this run's own version manifest (CURRENT.json, `manifest`, moves on with later publications)
                   "published_manifest": (publish.get("version") or publish.get("manifest")) if published else None}
            self._delete_children(conn, key)
            if existing:
                conn.execute(runs.update().where(*where).values(row))
            else:
                conn.execute(runs.insert().values({**key, **row}))
            for table, rows in ((steps, _step_rows(key, summary_steps)),
                                (inputs, _input_rows(key, summary_steps.get("ingest"))),
                                (attrition, _attrition_rows(key, summary_steps)),
                                (checks, _check_rows(key, summary_steps))):
                if rows:
                    conn.execute(table.insert(), rows)

    # -- reading
    @staticmethod
    def _run_dict(row) -> dict:
        run = dict(row)
        started, finished = _timestamp(run["started_at"]), _timestamp(run["finished_at"])
        run["started_at"], run["finished_at"] = _iso(started), _iso(finished)
        run["seconds"] = round((finished - started).total_seconds(), 3) if started and finished else None
        run["steps_selected"] = json.loads(run["steps_selected"]) if run["steps_selected"] else None
        run["delivery_profile"] = json.loads(run["delivery_profile"]) if run.get("delivery_profile") else None
        return run

    def list_runs(self, region: str | None = None, release: str | None = None, limit: int = 50) -> list[dict]:
        """Runs, newest first (by start), with their duration in `seconds` once finished."""
        query = sa.select(runs)
        if region:
            query = query.where(runs.c.region == region)
        if release:
            query = query.where(runs.c.release == release)
        query = query.order_by(runs.c.started_at.desc().nulls_last(), runs.c.run_id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [self._run_dict(r) for r in conn.execute(query).mappings()]

    def run_record(self, run_id: str, region: str | None = None, release: str | None = None) -> dict:
        """One run's facts with its steps, inputs, attrition and checks. RunNotFound when no run or
        several runs (same run id in several regions or releases) match."""
        where = [runs.c.run_id == run_id] + ([runs.c.region == region] if region else []) + (
            [runs.c.release == release] if release else [])
        with self.engine.connect() as conn:
            found = list(conn.execute(sa.select(runs).where(*where).order_by(runs.c.region, runs.c.release)).mappings())
            asked = f"run {run_id!r}" + (f" region {region!r}" if region else "") + (
                f" release {release!r}" if release else "")
            if not found:
                raise RunNotFound(f"no {asked} in the audit database {self.url}")
            if len(found) > 1:
                matches = ", ".join(f"region {r['region']} release {r['release']}" for r in found)
                raise RunNotFound(f"{asked} is ambiguous, it matches {len(found)} runs ({matches}): "
                                  "give the region and the release")
            record = self._run_dict(found[0])
            key = {k: record[k] for k in _RUN_KEY}
            children = {}
            for name, table, order in (("steps", steps, [steps.c.started_at, steps.c.step]),
                                       ("inputs", inputs, [inputs.c.table_name, inputs.c.file]),
                                       ("attrition", attrition, [attrition.c.step, attrition.c.kind,
                                                                 attrition.c.reason, attrition.c.table_name]),
                                       ("checks", checks, [checks.c.gate, checks.c.name])):
                rows = conn.execute(sa.select(table).where(*(table.c[k] == key[k] for k in _RUN_KEY))
                                    .order_by(*order)).mappings()
                children[name] = [{c: v for c, v in r.items() if c not in _RUN_KEY} for r in rows]
        for step in children["steps"]:
            step["started_at"] = _iso(step["started_at"])
            step["totals"] = json.loads(step["totals"]) if step["totals"] else None
        return {**record, **children}


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # SQLite ignores foreign keys unless asked, per connection: same cascade as PostgreSQL.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def open_audit(url: str) -> AuditDB:
    """Open (and create if missing) the audit database at a SQLAlchemy URL or a SQLite file path. A
    SQLite file's directory is created; the file is safe for a few concurrent writers (busy timeout)."""
    parsed = normalise_url(url)
    settings = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        settings["connect_args"] = {"timeout": 60}
    engine = sa.create_engine(parsed, **settings)
    if parsed.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    try:
        return AuditDB(engine)
    except BaseException:
        engine.dispose()
        raise


# --- the command -----------------------------------------------------------------------------------
def _table(headers: list[str], rows: list[list], right: set[int] = frozenset()) -> list[str]:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values):
        padded = (v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths)))
        return "  ".join(padded).rstrip()

    return [line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells]


def _n(value) -> str:
    return "" if value is None else f"{value:,}"


def _seconds(value) -> str:
    if value is None:
        return ""
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(round(value), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m{secs:02d}s" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def format_runs(runs_: list[dict]) -> str:
    if not runs_:
        return "no runs recorded"
    rows = [[r["run_id"], r["region"], r["release"], r["status"],
             "/".join(x for x in (r["trigger"], r["triggered_by"]) if x) or "",
             r["started_at"], _seconds(r["seconds"]), r["code_version"]] for r in runs_]
    return "\n".join(_table(["run id", "region", "release", "status", "trigger/user", "started", "duration", "code"],
                            rows, right={6}))


def format_record(rec: dict) -> str:
    by = f" by {rec['triggered_by']}" if rec["triggered_by"] else ""
    out = [f"Run {rec['run_id']} · region {rec['region']} · release {rec['release']} · {rec['status'].upper()}",
           f"  dag {rec['dag_id']}, trigger {rec['trigger']} (run type {rec['run_type']}){by}",
           f"  engine {rec['engine']}, code {rec['code_version']}, config sha256 {rec['config_hash']}",
           f"  input {rec['input_uri']}",
           f"  started {rec['started_at']}, finished {rec['finished_at'] or '-'}"
           + (f" ({_seconds(rec['seconds'])})" if rec["seconds"] is not None else ""),
           f"  summary {rec['summary_path'] or '-'}",
           "  published: " + (f"yes, manifest {rec['published_manifest']}" if rec["published"] else "no")]
    if rec["steps_selected"]:
        out.append(f"  steps selected: {', '.join(rec['steps_selected'])}" + (" (dry run)" if rec["dry_run"] else ""))
    if rec.get("delivery_profile"):
        prof = rec["delivery_profile"]
        out.append(f"  delivery profile {prof.get('name')} ({prof.get('source')}): separator {prof.get('separator')!r}, "
                   f"{prof.get('encoding')}, patient column {prof.get('patient_id_column')}, decimal "
                   f"{prof.get('decimal_separator')!r}, uncatalogued files: {prof.get('uncatalogued')}")
    if rec["truth_check"]:
        out.append(f"  truth check: {rec['truth_check']}")
    out += ["", f"Steps ({len(rec['steps'])})"]
    out += ["  " + line for line in _table(
        ["step", "status", "started", "seconds", "rows read", "rows written", "quarantined", "dropped", "error"],
        [[s["step"], s["status"], s["started_at"], "" if s["seconds"] is None else f"{s['seconds']:.1f}",
          _n(s["rows_read"]), _n(s["rows_written"]), _n(s["quarantined"]), _n(s["dropped_by_rule"]), s["error"]]
         for s in rec["steps"]], right={3, 4, 5, 6, 7})]
    total_bytes = sum(i["bytes"] or 0 for i in rec["inputs"])
    out += ["", f"Inputs ({len(rec['inputs'])} files, {total_bytes:,} bytes)"]
    out += ["  " + line for line in _table(
        ["file", "table", "year", "bytes", "rows read", "sha256"],
        [[i["file"], i["table_name"], i["year"], _n(i["bytes"]), _n(i["rows_read"]), i["sha256"]]
         for i in rec["inputs"]], right={3, 4})]
    out += ["", f"Attrition ({sum(a['rows'] for a in rec['attrition']):,} rows)"]
    out += ["  " + line for line in _table(
        ["step", "kind", "rule or reason", "table", "rows"],
        [[a["step"], a["kind"], a["reason"], a["table_name"], _n(a["rows"])] for a in rec["attrition"]], right={4})]
    failed = sum(c["status"] == "fail" for c in rec["checks"])
    out += ["", f"Checks ({len(rec['checks'])}, {failed} failed)"]
    out += ["  " + line for line in _table(
        ["gate", "check", "severity", "status", "observed", "threshold", "total", "message"],
        [[c["gate"], c["name"], c["severity"], c["status"], _n(c["observed"]),
          "" if c["threshold"] is None else f"{c['threshold_kind']} {c['threshold']:g}", _n(c["total"]), c["message"]]
         for c in rec["checks"]], right={4, 6})]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spark_jobs.audit", description="The run audit database: list runs, "
                                "show one run's record")
    p.add_argument("--url", default=os.environ.get(URL_ENV),
                   help=f"SQLAlchemy URL or SQLite file of the audit database (default: ${URL_ENV})")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="runs, newest first")
    ls.add_argument("--region")
    ls.add_argument("--release")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="one run's record: facts, steps, inputs, attrition, checks")
    show.add_argument("run_id")
    show.add_argument("--region")
    show.add_argument("--release")
    show.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if not args.url:
        p.error(f"no audit database: give --url or set {URL_ENV}")
    try:
        with open_audit(args.url) as audit:
            if args.command == "list":
                found = audit.list_runs(region=args.region, release=args.release, limit=args.limit)
                print(json.dumps(found, indent=1) if args.json else format_runs(found))
            else:
                record = audit.run_record(args.run_id, region=args.region, release=args.release)
                print(json.dumps(record, indent=1) if args.json else format_record(record))
    except AuditError as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return 2
    except sa.exc.OperationalError as exc:  # the driver's message names host and user, never the password
        print(f"audit: cannot use the audit database {normalise_url(args.url).render_as_string(hide_password=True)}: "
              f"{str(exc.orig).strip()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
