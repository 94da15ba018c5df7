"""Run the release DAG on this machine: what `make demo`, `make run` and `make airflow` call.

    python -m snds_operators.localrun run --input DIR --release R [--region local] [--engine duckdb|spark]
                                          [--steps merge,model] [--dry-run] [--profile NAME|FILE|auto]
    python -m snds_operators.localrun run --region fr-paris --logical-date 2026-02-05T06:00:00+00:00
                                          # the scheduled run of that date: release 2026-01 from the landing zone
    python -m snds_operators.localrun airflow      # airflow standalone with the project's DAGs
    python -m snds_operators.localrun sql [--region R] [-c QUERY]      # the region's catalog of published tables
    python -m snds_operators.localrun audit [--region R] list|show RUN_ID   # the region's run audit database
    python -m snds_operators.localrun versions [--region R] list|show|switch ...   # published versions
    python -m snds_operators.localrun cohort --release R [--region R] [--study FILE] [--model-run-id ID]

Airflow's metadata database is SQLite under var/airflow (project-local AIRFLOW_HOME). The release DAG
runs with `airflow dags test`; its full log goes to var/airflow/run-logs/, and the terminal shows progress:
task starts and ends, and the step's own lines (files, row counts, timings). The last line printed
is the path of the run's summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from snds_operators.regions import PROJECT_ROOT, configure_lake_io, default_region, load_regions
from spark_jobs.uris import is_s3

VAR = PROJECT_ROOT / "var"
AIRFLOW_HOME = VAR / "airflow"

_TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+)")
_TASK_END = re.compile(r"\[DAG TEST\] end task task_id=(\S+)")
_STATE = re.compile(r"Task instance state updated .*new_state=(\w+)")
_STEP_LINE = re.compile(r"(snds\.\w+: .*?)(?:\s+\[airflow\.task.*)?$")
_ERROR = re.compile(r"(DeliveryError|AccountingError|AirflowFailException|Error:)\s*(.*)")


def java_home() -> str | None:
    """JAVA_HOME, or the home of the `java` on PATH (Spark needs it)."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = shutil.which("java")
    if not java:
        return None
    return str(Path(os.path.realpath(java)).parent.parent)


def local_env(engine: str | None = None) -> dict[str, str]:
    """Environment for Airflow commands on this machine."""
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env.setdefault("AIRFLOW_HOME", str(AIRFLOW_HOME))
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT_ROOT / "dags")
    env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(PROJECT_ROOT / "plugins")
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    env.setdefault("AIRFLOW__CORE__PARALLELISM", "4")
    env.setdefault("AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG", "2")
    env.setdefault("AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR", "True")
    env.setdefault("SNDS_DEPLOYMENT", "local")
    # Each local region's Spark connection, explicitly (a missing one would mean YARN), pointing to the
    # master its config names; a connection already in the environment wins.
    for region in load_regions(deployment_name=env["SNDS_DEPLOYMENT"]).values():
        if region.spark_conn_id and region.spark.get("master"):
            env.setdefault(f"AIRFLOW_CONN_{region.spark_conn_id.upper()}",
                           json.dumps({"conn_type": "spark", "host": region.spark["master"]}))
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    jh = java_home()
    if jh:
        env.setdefault("JAVA_HOME", jh)
    if engine:
        env["SNDS_ENGINE"] = engine
    return env


def lineage_env(region) -> dict[str, str]:
    """OpenLineage settings of a region's runs: its namespace and transport (a local file by default)."""
    transport = dict(region.lineage.get("transport") or {"type": "console"})
    if transport["type"] == "file":
        Path(transport["log_file_path"]).parent.mkdir(parents=True, exist_ok=True)
    return {"AIRFLOW__OPENLINEAGE__NAMESPACE": region.lineage["namespace"],
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport)}


def ensure_airflow_db(env: dict[str, str]) -> None:
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    sqlite = not env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "sqlite").startswith(("postgresql", "mysql"))
    if sqlite and (home / "airflow.db").exists():
        return
    print(f"Creating the Airflow metadata database in {home} ...", flush=True)
    subprocess.run(["airflow", "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)


def _follow(proc: subprocess.Popen, log_file: Path) -> None:
    """Copy the dags-test output to the log file; echo progress lines to the terminal."""
    started: dict[str, float] = {}
    state: dict[str, str] = {}
    with open(log_file, "w", encoding="utf-8") as log:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if m := _TASK_START.search(line):
                started[m.group(1)] = time.monotonic()
                print(f"▶ {m.group(1)}", flush=True)
            elif m := _STATE.search(line):
                state["last"] = m.group(1)
            elif m := _TASK_END.search(line):
                task_id = m.group(1)
                secs = time.monotonic() - started.get(task_id, time.monotonic())
                print(f"■ {task_id}: {state.get('last', '?')} ({secs:.1f} s)", flush=True)
            elif "snds." in line and (m := _STEP_LINE.search(line)):
                print(f"    {m.group(1).strip()}", flush=True)


def run_release(*, region_name: str | None, release: str | None, input_dir: str | None, engine: str | None,
                steps: list[str] | None = None, dry_run: bool = False, logical_date: str | None = None,
                profile: str | None = None) -> Path:
    """Run a region's release DAG with `airflow dags test`: for `release` and the delivery `input_dir`
    (the landing zone's `<release>/` when not given), or, with `logical_date`, as the scheduled run of
    that date would (the release is the month of its data interval)."""
    env = local_env(engine)
    os.environ.update({k: env[k] for k in ("SNDS_ENGINE",) if k in env})
    regions = load_regions()
    if region_name and region_name not in regions:
        raise SystemExit(f"unknown region {region_name!r}; known: {', '.join(regions)}")
    region = regions[region_name] if region_name else default_region(regions)
    env["SNDS_REGIONS"] = region.name  # parse only this region's DAGs
    input_path = Path(input_dir).resolve() if input_dir else None
    if input_path and not input_path.is_dir():
        raise SystemExit(f"delivery directory {input_dir!r} not found")
    ensure_airflow_db(env)
    env.update(lineage_env(region))
    dag_id = f"snds_release__{region.name}"
    logs = Path(env["AIRFLOW_HOME"]) / "run-logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_file = logs / f"{dag_id}-{release or logical_date}-{time.strftime('%Y%m%dT%H%M%S')}.log"
    conf = {"release": release or "", "input": str(input_path or ""), "dry_run": dry_run}
    if steps:
        conf["steps"] = steps
    if profile:
        # A profile file is given to the DAG by absolute path; a name (or auto) as it is.
        conf["profile"] = str(Path(profile).resolve()) if ("/" in profile or profile.endswith(".yaml")) else profile
    print(f"Running {dag_id} on {region.engine if not engine else engine}: "
          + (f"release {release}, delivery {input_path or 'from the landing zone'}" if release
             else f"the scheduled run of {logical_date}") + (" (dry run)" if dry_run else ""))
    print(f"(full Airflow log: {log_file})", flush=True)
    t0 = time.monotonic()
    with subprocess.Popen(
        ["airflow", "dags", "test", dag_id, *([logical_date] if logical_date else []), "-c", json.dumps(conf)],
        env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
    ) as proc:
        _follow(proc, log_file)
        code = proc.wait()
    # The summarize task prints the summary's path; a run that died before it has none.
    from spark_jobs import lakefs

    configure_lake_io(region)  # the summary is read with the region's AWS connection, as the DAG wrote it
    printed = re.findall(r"summary: (\S+summary\.json)", log_file.read_text())
    # A local path, or an s3:// URI when the region's lake is on S3.
    summary_path = (lakefs.LakePath(printed[-1]) if is_s3(printed[-1]) else Path(printed[-1])) if printed else None
    summary = lakefs.read_json(summary_path) if summary_path and lakefs.is_file(summary_path) else None
    if summary is not None:
        from spark_jobs.report import human_summary

        print()
        print(human_summary(summary))
        print(f"Done in {time.monotonic() - t0:.0f} s.")
    if code != 0 or summary is None or summary["status"] not in ("success", "dry_run"):
        # The failing step's own error first; otherwise the last error lines of the Airflow log.
        errors = [f"{name}: {step['error']}" for name, step in (summary or {}).get("steps", {}).items()
                  if step.get("status") != "success" and step.get("error")]
        if not errors:
            errors = [m.group(0) for m in map(_ERROR.search, log_file.read_text().splitlines()) if m][-3:]
        for e in errors:
            print(f"  {e[:500]}", file=sys.stderr)
        raise SystemExit(f"release run failed (exit code {code}); full log: {log_file}")
    print(summary_path)
    return summary_path


def standalone() -> None:
    env = local_env()
    ensure_airflow_db(env)
    home = Path(env["AIRFLOW_HOME"])
    port = env.get("AIRFLOW__API__PORT", "8080")
    print(f"Starting airflow standalone (AIRFLOW_HOME={home}).")
    print(f"UI: http://localhost:{port}   user: admin")
    print(f"Admin password: in {home / 'simple_auth_manager_passwords.json.generated'} (also printed below)")
    print("Stop with Ctrl-C.", flush=True)
    os.execvpe("airflow", ["airflow", "standalone"], env)


def region_keys(action: str, region_name: str | None) -> int:
    """The region's key and vault administration (spark_jobs.keyadmin) with the region's settings."""
    from spark_jobs.keyadmin import main as keyadmin

    regions = load_regions()
    if region_name and region_name not in regions:
        raise SystemExit(f"unknown region {region_name!r}; known: {', '.join(regions)}")
    region = regions[region_name] if region_name else default_region(regions)
    args = region.pseudonymisation_args(argon2=action == "check")
    if action == "check":
        args += ["--lake", str(region.lake_root)]
        if region.key_provider.get("create_if_missing"):
            args.append("--create-key")
    return keyadmin([action, *args])


def _region(region_name: str | None):
    regions = load_regions()
    if region_name and region_name not in regions:
        raise SystemExit(f"unknown region {region_name!r}; known: {', '.join(regions)}")
    region = regions[region_name] if region_name else default_region(regions)
    configure_lake_io(region)
    return region


def region_sql(region_name: str | None, query: str | None) -> int:
    """The region's catalog of published tables (spark_jobs.catalog): one query, or a prompt."""
    from spark_jobs import catalog

    region = _region(region_name)
    return catalog.main(["sql", "--catalog", str(catalog.catalog_path(region.lake_root, region.name)),
                         *(["-c", query] if query else [])])


def region_audit(region_name: str | None, args: list[str]) -> int:
    """The region's run audit database (spark_jobs.audit): list runs, show one."""
    from spark_jobs import audit

    region = _region(region_name)
    os.environ.update({k: v for k, v in local_env().items() if k.startswith("AIRFLOW")})
    return audit.main(["--url", region.audit_url(), *args])


def region_versions(region_name: str | None, args: list[str]) -> int:
    """The region's published versions (spark_jobs.publish): list, show, switch back."""
    from spark_jobs import publish

    region = _region(region_name)
    return publish.main(["--lake", region.lake_root, "--region", region.name, *args])


def region_cohort(region_name: str | None, release: str, studies: list[str], model_run_id: str | None) -> int:
    """Study cohorts over a published release of the region (spark_jobs.cohort)."""
    from spark_jobs import cohort

    region = _region(region_name)
    return cohort.main(["--lake", region.lake_root, "--region", region.name, "--release", release,
                        *[a for s in studies for a in ("--study", s)],
                        *(["--model-run-id", model_run_id] if model_run_id else []), *region.allowed_root_args()])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="snds_operators.localrun", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the release DAG of a region on a delivery directory")
    r.add_argument("--input", default=None, help="delivery directory (default: <landing_root>/<release>/)")
    r.add_argument("--release", default=None)
    r.add_argument("--logical-date", default=None,
                   help="run as the scheduled run of this date would (release: the month of its data interval)")
    r.add_argument("--steps", default=None, help="comma-separated steps to run (default: all)")
    r.add_argument("--dry-run", action="store_true", help="check parameters, connections and delivery only")
    r.add_argument("--profile", default=None,
                   help="delivery profile: a name under config/profiles/, a profile file, or auto (default: the region's)")
    r.add_argument("--region", default=None, help="region name (default: the default region)")
    r.add_argument("--engine", default=None, choices=["duckdb", "spark", "spark-local", "spark-standalone"],
                   help="override the region's engine (spark = spark-local)")
    sub.add_parser("airflow", help="airflow standalone with the project's DAGs")
    k = sub.add_parser("keys", help="check the region's key and vault, merge pending deltas, or rotate the key")
    k.add_argument("action", choices=["check", "commit", "rotate"])
    k.add_argument("--region", default=None, help="region name (default: the default region)")
    q = sub.add_parser("sql", help="query the region's published tables (its DuckDB catalog)")
    q.add_argument("--region", default=None, help="region name (default: the default region)")
    q.add_argument("-c", "--command", dest="query", default=None, help="SQL to run (default: a prompt)")
    for name, text in (("audit", "the region's run audit database: list | show RUN_ID [--release R] [--json]"),
                       ("versions", "published versions: list | show --release R [--run-id ID] | "
                                    "switch --release R --run-id ID")):
        c = sub.add_parser(name, help=text)
        c.add_argument("--region", default=None, help="region name (default: the default region)")
        c.add_argument("args", nargs=argparse.REMAINDER, help=text)
    c = sub.add_parser("cohort", help="study cohorts over a published release of the region")
    c.add_argument("--region", default=None, help="region name (default: the default region)")
    c.add_argument("--release", required=True)
    c.add_argument("--study", action="append", default=[], help="study file (default: every config/studies/*.yaml)")
    c.add_argument("--model-run-id", default=None, help="a published run (default: the release's current one)")
    args = p.parse_args(argv)
    if args.cmd == "cohort":
        return region_cohort(args.region, args.release, args.study, args.model_run_id)
    if args.cmd == "sql":
        return region_sql(args.region, args.query)
    if args.cmd == "audit":
        return region_audit(args.region, args.args or ["list"])
    if args.cmd == "versions":
        return region_versions(args.region, args.args or ["list"])
    if args.cmd == "run":
        if not args.release and not args.logical_date:
            p.error("run needs --release (and usually --input) or --logical-date")
        run_release(region_name=args.region, release=args.release, input_dir=args.input, engine=args.engine,
                    steps=args.steps.split(",") if args.steps else None, dry_run=args.dry_run,
                    logical_date=args.logical_date, profile=args.profile)
    elif args.cmd == "keys":
        return region_keys(args.action, args.region)
    else:
        standalone()
    return 0


if __name__ == "__main__":
    sys.exit(main())
