"""Builds every region's DAGs from config/regions/*.yaml (one factory; adding a region is adding a file):

- `snds_release__<region>`: one release through the pipeline. Monthly schedule (the data interval's
  month is the release; backfills work the same way), manual trigger with Params, or an Asset event
  from the landing watch;
- `snds_landing_watch__<region>`: daily; announces each complete new delivery of the landing zone;
- `snds_key_rotation__<region>`: manual; new master key, vault re-wrapped;
- `snds_cohorts__<region>` (snds_operators.cohorts): on each publication, the study cohorts of
  config/studies/ over the published model.

The DAG file (dags/snds_release.py) only calls `build_dags()`; everything here is cheap to import
(no DuckDB, Spark or pandas): the steps run in their own processes or clusters.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from airflow.sdk import DAG, Asset, Param, task

from snds_operators.encryption import KeyCheckOperator, KeyRotationOperator, VaultUpdateOperator, region_key_settings
from snds_operators.operators import step_tasks
from snds_operators.regions import BUNDLE_ENGINES, Region, configure_lake_io, load_regions, selected_regions
from snds_operators.releases import FOLLOWS, RELEASE_PATTERN, STEPS, run_paths  # noqa: F401  (re-exported)
from spark_jobs.profiles import available_profiles
from spark_jobs.uris import is_s3, join

try:  # Airflow 3.1+
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
except ImportError:  # pragma: no cover
    from airflow.exceptions import AirflowFailException, AirflowSkipException

DOC = """\
### SNDS release pipeline, region `{region}`

Turns one SNDS delivery (a directory of CSV files as CNAM delivers them) into the lake of region
`{region}` (`{lake}`, cloud region `{cloud}`), on the `{engine}` engine.

**Starts:** monthly (`{cron}`): each run covers a one-month data interval and starts at its end; the
interval's first month M is the release `YYYY-MM` it processes, from `{landing}/YYYY-MM/` (waiting for
the delivery to be complete), e.g. the run starting on 5 February processes `2026-01`.
`airflow backfill create` replays past months the same way. Also when the landing watch
announces a complete delivery (Asset `snds_delivery__{region}`), or by hand with the trigger form:
`release` (e.g. `2024-06`), `input` (a delivery directory inside the region's storage; empty: the
landing zone), `steps` (a subset re-runs only those steps on the release's existing zones) and
`dry_run` (check everything, run nothing).

**Tasks:** `prepare_run` (release, delivery, paths; refuses a second active run of the same release;
opens the run's audit record) -> `preflight` (connections and every location inside the region's
storage) -> `wait_for_delivery` (scheduled and Asset runs: the delivery is complete and its SHA256SUMS
match) -> `check_keys` (the region's key opens its vault, at `{vault}`) -> `ingest` -> `update_vault` ->
`clean_dcir`, `clean_pmsi` -> `gate_clean` (quality checks of sql/quality/checks.yaml: a failed blocking
check stops the run) -> `merge` -> `model` (written under the run's own location) -> `gate_model` ->
`feasibility_report` (HTML, small counts masked) -> `publish` (write-audit-publish: the audited model
becomes the release's current version in one pointer switch; the catalog is refreshed) -> `summarize`
(writes `runs/release=<release>/<run>/summary.json` and the audit record; after a publish, emits the
Asset `snds_model__{region}` for downstream DAGs). Each working zone of the release is replaced
atomically by its step; published versions are never replaced.
"""

WATCH_DOC = """\
### Landing watch, region `{region}`

Looks at `{landing}` ({cron}). A delivery is `<release>/` with its CSV files and a `SHA256SUMS`
manifest written last by the sender. A delivery is announced (Asset `snds_delivery__{region}`, which
starts `snds_release__{region}` for that release) once every file of the manifest is present with the
right checksum, no file is still being written (quiet for {quiet} s) and every required table is
there. An incomplete delivery is reported in the task log with its reasons and announced later, once
complete. A delivery is announced once per manifest version.
"""

ROTATION_DOC = """\
### Key rotation, region `{region}`

Trigger by hand. Creates a new master key (local key ring: the previous key is kept, retired, so older
vault versions stay readable; KMS: the configured key) and re-wraps the current vault version under it
without re-hashing any identifier. Pseudonyms do not change.
"""

DEFAULT_START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def _xcom(key: str) -> str:
    return "{{ ti.xcom_pull(task_ids='prepare_run')['" + key + "'] }}"


# Assets are named, not addressed by URI: an s3:// URI would load the amazon provider (boto3) at parse
# time to normalise it. The locations travel in each event's `extra`.
def delivery_asset(region: Region) -> Asset:
    return Asset(name=f"snds_delivery__{region.name}", group="snds")


def model_asset(region: Region) -> Asset:
    return Asset(name=f"snds_model__{region.name}", group="snds")


def _start_date(region: Region) -> dt.datetime:
    start = region.schedule.get("start_date")
    return dt.datetime.fromisoformat(start).replace(tzinfo=dt.timezone.utc) if start else DEFAULT_START


def release_schedule(region: Region):
    """Monthly cron with the month as data interval, or-ed with the landing watch's Asset."""
    from airflow.sdk import AssetOrTimeSchedule, CronDataIntervalTimetable

    cron, watch = region.schedule.get("release"), region.schedule.get("landing_watch")
    if cron and watch:
        return AssetOrTimeSchedule(timetable=CronDataIntervalTimetable(cron, timezone="UTC"),
                                   assets=[delivery_asset(region)])
    if cron:
        return CronDataIntervalTimetable(cron, timezone="UTC")
    return [delivery_asset(region)] if watch else None


def _dag_settings(region: Region) -> dict:
    """Settings every DAG of a region shares: no catch-up of past months (backfills are explicit), no
    automatic retry (failures are deterministic: a bad delivery or a wrong key fails again)."""
    return {"start_date": _start_date(region), "catchup": False, "default_args": {"retries": 0}}


def _select_step(step: str):
    """pre_execute hook: skip a step the run does not select, and every step of a dry run. A gate, the
    report and publish (FOLLOWS) run when a step they follow runs."""
    wanted = FOLLOWS.get(step, (step,))

    def hook(context) -> None:
        run = context["ti"].xcom_pull(task_ids="prepare_run")
        if run["dry_run"]:
            raise AirflowSkipException(f"dry run: {step} not run")
        if not set(wanted) & set(run["steps"]):
            raise AirflowSkipException(f"{step} not selected for this run (steps: {', '.join(run['steps'])})")

    return hook


def _model_not_published(region: Region):
    """pre_execute hook of the model step: a run's model is immutable once published (the manifest and
    the catalog name its files); re-running the model of such a run is refused. Trigger a new run."""
    select = _select_step("model")

    def hook(context) -> None:
        select(context)
        from spark_jobs import lakefs
        from spark_jobs.publish import version_path

        run = context["ti"].xcom_pull(task_ids="prepare_run")
        configure_lake_io(region)
        if lakefs.is_file(version_path(run["lake_root"], run["release"], run["run_id"])):
            raise AirflowFailException(
                f"run {run['run_id']} of release {run['release']} is published: its model is immutable. "
                "Trigger a new run to rebuild it.")

    return hook


def _connection(conn_id: str):
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


def _s3_client(region: Region):
    """The region's S3 client (its AWS connection), or None when it stores nothing on S3."""
    if not any(is_s3(u) for u in (region.lake_root, region.landing_root, region.code_root)):
        return None
    from spark_jobs.objectstore import s3_client

    return s3_client(region.cloud_region, region.aws_conn_id)


def config_files(region: Region) -> list[Path]:
    """The configuration a run's results depend on (hashed into its audit record): the ingest, cleaning
    and model settings, the quality checks and the region's own file."""
    from spark_jobs.bundle import resource

    return [resource(region.ingest_config), resource("config/clean.yaml"), resource("config/model.yaml"),
            resource("sql/quality/checks.yaml"), region.source]


def region_store(region: Region, root: str):
    """A store (spark_jobs.objectstore) under one of the region's roots; on S3, objects are written
    with SSE-KMS under the region's key."""
    from spark_jobs.objectstore import open_store

    kms = region.key_provider["key_arn"] if region.key_provider["type"] == "aws_kms" else None
    return open_store(root, s3_client=_s3_client(region) if is_s3(root) else None, sse_kms_key_id=kms)


def build_release_dag(region: Region) -> DAG:
    cron = region.schedule.get("release")
    with DAG(
        dag_id=f"snds_release__{region.name}",
        description=f"SNDS delivery -> lake, region {region.name} ({region.cloud_region}, {region.engine})",
        schedule=release_schedule(region),
        max_active_runs=region.max_active_runs,
        **_dag_settings(region),
        tags=["snds", f"region:{region.name}", f"engine:{region.engine}"],
        doc_md=DOC.format(region=region.name, lake=region.lake_root, engine=region.engine, vault=region.vault_root,
                          cloud=region.cloud_region, landing=region.landing_root, cron=cron or "no schedule"),
        params={
            "release": Param("", type="string", pattern=f"^$|{RELEASE_PATTERN}", title="Release",
                             description="Data release id, e.g. 2024-06. Empty: the month of a scheduled run."),
            "input": Param("", type="string", title="Delivery location",
                           description=f"Delivery directory inside the region's storage. Empty: "
                                       f"{region.landing_root}/<release>/"),
            "steps": Param(list(STEPS), type="array", items={"type": "string", "enum": list(STEPS)},
                           minItems=1, uniqueItems=True, title="Steps",
                           description="Steps to run; the others are skipped (their zones are reused)."),
            "profile": Param(region.profile, type="string", minLength=1, title="Delivery profile",
                             examples=[*available_profiles(), "auto"],
                             description="How the delivery's files are written (separator, encoding, patient "
                                         "column, date layouts, decimal separator, uncatalogued files): a "
                                         "profile under config/profiles/, a profile file, or `auto` (detected "
                                         "from the files' headers and first lines; docs/ingest.md). Default: "
                                         "the region's."),
            "dry_run": Param(False, type="boolean", title="Dry run",
                             description="Check the parameters, connections and delivery; run no step."),
        },
    ) as dag:

        @task(task_id="prepare_run")
        def prepare_run(params=None, run_id=None, triggering_asset_events=None, data_interval_start=None,
                        dag_run=None):
            from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

            from snds_operators.releases import ReleaseRunError, claim_release, resolve_release
            from spark_jobs.audit import config_hash, open_audit
            from spark_jobs.report import code_version, now_utc

            events = [ev.extra for events in (triggering_asset_events or {}).values() for ev in events]
            try:
                run = resolve_release(region, params, asset_events=events, data_interval_start=data_interval_start)
                if not run["dry_run"]:
                    claim_release(region, run["release"], run_id, dag.dag_id, RuntimeTaskInstance.get_dagrun_state,
                                  region_store(region, region.lake_root))
            except ReleaseRunError as exc:
                raise AirflowFailException(str(exc)) from None
            paths = run_paths(region.lake_root, run["release"], run_id)
            if not is_s3(paths["run_dir"]):
                Path(paths["run_dir"], "steps").mkdir(parents=True, exist_ok=True)
            # Who or what started the run, and with which code and configuration: the audit record's
            # first facts, written before any step runs (an unreachable audit database stops the run).
            run_type = getattr(dag_run, "run_type", None)
            audit = {"dag_id": dag.dag_id, "run_type": str(getattr(run_type, "value", run_type) or "") or None,
                     "triggered_by": getattr(dag_run, "triggering_user_name", None),
                     "code_version": code_version(), "config_hash": config_hash(config_files(region)),
                     "started_at": now_utc()}
            try:
                with open_audit(region.audit_url()) as audit_db:
                    audit_db.record_run_start(region=region.name, release=run["release"], run_id=run_id,
                                              trigger=run["trigger"], engine=region.engine, input_uri=run["input"],
                                              **audit)
            except Exception as exc:  # no run without its audit record
                raise AirflowFailException(f"region {region.name}: the audit database ({region.audit}) cannot "
                                           f"record this run: {type(exc).__name__}: {exc}") from None
            print(f"region {region.name}: release {run['release']} ({run['trigger']}), delivery {run['input']}, "
                  f"steps {', '.join(run['steps'])}{' (dry run)' if run['dry_run'] else ''}")
            return {**paths, **run, "run_id": run_id, "audit": audit}

        @task(task_id="preflight")
        def preflight(paths: dict) -> dict:
            from airflow.sdk import get_current_context

            from snds_operators.releases import ReleaseRunError, preflight as check

            try:
                checked = check(region, paths, get_current_context()["dag"].tasks, _connection)
            except ReleaseRunError as exc:
                raise AirflowFailException(str(exc)) from None
            print(f"preflight: {json.dumps(checked, sort_keys=True)}")
            return checked

        @task.sensor(task_id="wait_for_delivery", mode="reschedule", poke_interval=300,
                     timeout=int(float(region.landing.get("arrival_timeout_hours", 72)) * 3600))
        def wait_for_delivery(paths: dict):
            from airflow.sdk import PokeReturnValue

            from snds_operators.landing import check_delivery, required_tables_from_config
            from spark_jobs.bundle import resource

            if not paths["from_landing"]:
                print(f"explicit delivery {paths['input']}: no arrival check")
                return PokeReturnValue(is_done=True)
            check = check_delivery(paths["input"], required_tables=required_tables_from_config(
                resource(region.ingest_config)), quiet_seconds=float(region.landing.get("quiet_seconds", 300)),
                s3_client=_s3_client(region), profile=region.profile)
            if check.status != "complete":
                print(f"delivery {paths['input']} not complete yet: {'; '.join(check.problems)}")
            # A dry run reports the delivery's state once instead of waiting for it.
            return PokeReturnValue(is_done=check.status == "complete" or paths["dry_run"], xcom_value=check.to_dict())

        common = ["--release", _xcom("release"), "--run-id", _xcom("run_id"), "--config", region.ingest_config]
        steps = {}
        steps["ingest"] = step_tasks(
            task_id="ingest", step="ingest", region=region, pre_execute=_select_step("ingest"),
            step_args=["--input", _xcom("input"), "--output", _xcom("ingest"), "--quarantine", _xcom("quarantine"),
                       "--truth", _xcom("truth"), "--report", _xcom("ingest_report"), "--profile", _xcom("profile"),
                       *common,
                       *region.pseudonymisation_args()],
        )
        for source in ("dcir", "pmsi"):
            steps[f"clean_{source}"] = step_tasks(
                task_id=f"clean_{source}", step="clean", region=region, pre_execute=_select_step(f"clean_{source}"),
                trigger_rule="none_failed",
                step_args=["--source", source, "--input", _xcom("ingest"), "--output", _xcom("clean") + f"/{source}",
                           "--report", _xcom(f"clean_{source}_report"), *common],
            )
        steps["merge"] = step_tasks(
            task_id="merge", step="merge", region=region, pre_execute=_select_step("merge"), trigger_rule="none_failed",
            step_args=["--input", _xcom("clean"), "--output", _xcom("merge"), "--report", _xcom("merge_report"),
                       *common],
        )
        steps["model"] = step_tasks(
            task_id="model", step="model", region=region, pre_execute=_model_not_published(region),
            trigger_rule="none_failed",
            step_args=["--input", _xcom("merge"), "--ingest", _xcom("ingest"), "--clean", _xcom("clean"),
                       "--output", _xcom("model"),
                       "--report", _xcom("model_report"), *common],
        )
        # The quality gates: one step (spark_jobs/quality.py), its stage and the zones it reads.
        for stage, zones in (("clean", ("ingest", "quarantine", "clean")),
                             ("model", ("clean", "merge", "model", "truth"))):
            steps[f"gate_{stage}"] = step_tasks(
                task_id=f"gate_{stage}", step="quality", region=region, pre_execute=_select_step(f"gate_{stage}"),
                trigger_rule="none_failed",
                step_args=["--stage", stage, "--run-dir", _xcom("run_dir"),
                           *[arg for zone in zones for arg in (f"--{zone}", _xcom(zone))],
                           "--delivery", _xcom("input"), "--lake", _xcom("lake_root"),
                           "--report", _xcom(f"gate_{stage}_report"), *common],
            )
        steps["feasibility_report"] = step_tasks(
            task_id="feasibility_report", step="feasibility", region=region,
            pre_execute=_select_step("feasibility_report"),
            step_args=["--model", _xcom("model"), "--run-dir", _xcom("run_dir"), "--output", _xcom("feasibility_html"),
                       "--report", _xcom("feasibility_report_report"), "--release", _xcom("release"),
                       "--run-id", _xcom("run_id")],
        )
        keys = region_key_settings(region)
        check_keys = KeyCheckOperator(task_id="check_keys", **keys)
        update_vault = VaultUpdateOperator(task_id="update_vault", **keys, pre_execute=_select_step("ingest"))

        @task(task_id="publish", pre_execute=_select_step("publish"))
        def publish(paths: dict) -> dict:
            """Write-audit-publish: the run's model, audited by the gates, becomes the release's current
            version in one pointer switch; the region's catalog is refreshed."""
            from spark_jobs.publish import PublishError, publish as publish_run

            configure_lake_io(region)
            try:
                manifest = publish_run(paths["lake_root"], region=region.name, release=paths["release"],
                                       run_id=paths["run_id"], run_dir=paths["run_dir"], model_zone=paths["model"],
                                       report_html=paths["feasibility_html"])
            except PublishError as exc:
                raise AirflowFailException(str(exc)) from None
            print(f"published release {paths['release']}: run {paths['run_id']} is current "
                  f"({sum(t['rows'] for t in manifest['tables'].values()):,} rows in {len(manifest['tables'])} tables)")
            return {"release": manifest["release"], "run_id": manifest["run_id"]}

        @task(task_id="summarize", trigger_rule="all_done", outlets=[model_asset(region)])
        def summarize(paths: dict, ti=None, outlet_events=None) -> str:
            from snds_operators.releases import expected_reports, release_claim
            from spark_jobs import lakefs
            from spark_jobs.audit import open_audit
            from spark_jobs.report import assemble_summary, human_summary

            if not paths:
                raise AirflowFailException("prepare_run did not complete: nothing to summarize")
            configure_lake_io(region)
            try:
                run_dir = lakefs.LakePath(paths["run_dir"])
                encryption = {"check_keys": ti.xcom_pull(task_ids="check_keys"),
                              "update_vault": ti.xcom_pull(task_ids="update_vault")}
                path = assemble_summary(
                    run_dir, region=region.name, release=paths["release"], run_id=paths["run_id"],
                    engine=region.engine, input_uri=paths["input"],
                    truth_manifest=lakefs.LakePath(paths["input"]) / "_truth" / "manifest.json",
                    extra={"encryption": encryption, "trigger": paths["trigger"], "steps_selected": paths["steps"],
                           "dry_run": paths["dry_run"], "cloud_region": region.cloud_region, **paths["audit"]},
                    selected_steps=expected_reports(paths["steps"]), dry_run=paths["dry_run"],
                )
            finally:
                if not paths["dry_run"]:
                    release_claim(paths["release"], paths["run_id"], region_store(region, region.lake_root))
            summary = lakefs.read_json(path)
            with open_audit(region.audit_url()) as audit_db:
                audit_db.record_summary(summary, summary_path=str(path))
            for line in human_summary(summary).splitlines():
                print(line)
            if not paths["dry_run"]:
                lakefs.write_json(run_dir.parent / "latest.json", {"run_id": paths["run_id"], "summary": str(path)})
            print(f"summary: {path}")
            if paths["dry_run"]:
                return str(path)
            if summary["status"] != "success":
                raise RuntimeError(f"release run failed; see {path}")
            if summary["steps"].get("publish", {}).get("status") != "success":
                print("nothing published by this run (model not selected): no Asset event")
                return str(path)
            outlet_events[model_asset(region)].extra = {
                "release": paths["release"], "run_id": paths["run_id"], "model": paths["model"], "summary": str(path),
                "manifest": summary["steps"]["publish"]["manifest"]}
            return str(path)

        paths = prepare_run()
        checked = preflight(paths)
        arrived = wait_for_delivery(paths)
        paths >> checked >> arrived >> check_keys
        first_step = steps["ingest"][0]
        if region.engine in BUNDLE_ENGINES:
            package = package_code_task(region)
            check_keys >> package >> first_step
        else:
            check_keys >> first_step
        steps["ingest"][1] >> update_vault >> [steps["clean_dcir"][0], steps["clean_pmsi"][0]]
        [steps["clean_dcir"][1], steps["clean_pmsi"][1]] >> steps["gate_clean"][0]
        steps["gate_clean"][1] >> steps["merge"][0]
        steps["merge"][1] >> steps["model"][0]
        steps["model"][1] >> steps["gate_model"][0]
        steps["gate_model"][1] >> steps["feasibility_report"][0]
        steps["feasibility_report"][1] >> publish(paths) >> summarize(paths)
    return dag


def package_code_task(region: Region):
    """The task that builds the job bundle and puts it under the region's code root (S3 with SSE-KMS
    under the region's key for the EMR engines); returns the URIs the step tasks use."""

    @task(task_id="package_code")
    def package_code() -> dict:
        import tempfile

        from spark_jobs.bundle import build

        with tempfile.TemporaryDirectory() as tmp:
            built = build(tmp)
            uris = upload_bundle(region, built)
        print(f"code bundle {built['version']} at {uris['uri']}")
        return uris

    return package_code()


def upload_bundle(region: Region, built: dict) -> dict:
    """Copy a built bundle (spark_jobs.bundle.build) to `<code_root>/<version>/`; returns its URIs:
    uri, zip, steps/<step>.py. The version is the content's hash: files already there are left alone."""
    from spark_jobs.bundle import ZIP_NAME

    store = region_store(region, join(region.code_root, built["version"]))
    uris = {"uri": store.uri(), "version": built["version"]}
    for name, local in sorted(built["files"].items()):
        uris["zip" if name == ZIP_NAME else name] = store.uri(name)
        if not store.exists(name):
            store.write_bytes(name, Path(local).read_bytes())
    return uris


def build_landing_watch_dag(region: Region) -> DAG:
    cron = region.schedule.get("landing_watch")
    with DAG(
        dag_id=f"snds_landing_watch__{region.name}",
        description=f"Announce complete deliveries of {region.landing_root}",
        schedule=cron or None,
        max_active_runs=1,
        **_dag_settings(region),
        tags=["snds", f"region:{region.name}", "landing"],
        doc_md=WATCH_DOC.format(region=region.name, landing=region.landing_root, cron=cron or "manual",
                                quiet=region.landing.get("quiet_seconds", 300)),
    ) as dag:

        @task(task_id="scan_landing")
        def scan_landing() -> list[dict]:
            from snds_operators.landing import required_tables_from_config, scan_landing as scan
            from spark_jobs.bundle import resource

            if not is_s3(region.landing_root) and not Path(region.landing_root).is_dir():
                print(f"landing zone {region.landing_root} does not exist yet: nothing delivered")
                return []
            checks = scan(region.landing_root, required_tables=required_tables_from_config(
                resource(region.ingest_config)), quiet_seconds=float(region.landing.get("quiet_seconds", 300)),
                s3_client=_s3_client(region), profile=region.profile)
            new = []
            for check in checks:
                seen = _announced(region, check.release)
                if check.status != "complete":
                    print(f"{check.release}: incomplete, not processed: {'; '.join(check.problems)}")
                elif seen == check.manifest_sha256:
                    print(f"{check.release}: complete, already announced")
                else:
                    print(f"{check.release}: complete ({len(check.files)} files, {check.bytes:,} bytes): announcing")
                    new.append(check.to_dict())
            return new

        @task(task_id="announce_delivery", outlets=[delivery_asset(region)])
        def announce_delivery(delivery: dict, outlet_events=None) -> str:
            region_store(region, region.lake_root).write_bytes(
                _delivery_marker(delivery["release"]), json.dumps(delivery, sort_keys=True, indent=2).encode())
            outlet_events[delivery_asset(region)].extra = {
                "release": delivery["release"], "input": delivery["location"],
                "manifest_sha256": delivery["manifest_sha256"]}
            return delivery["release"]

        announce_delivery.expand(delivery=scan_landing())
    return dag


def _delivery_marker(release: str) -> str:
    """The record of a delivery's announcement, relative to the lake root."""
    return f"runs/release={release}/delivery.json"


def _announced(region: Region, release: str) -> str | None:
    """The manifest checksum of the last announcement of `release`, if any."""
    try:
        data = region_store(region, region.lake_root).read_bytes(_delivery_marker(release))
    except FileNotFoundError:
        return None
    return json.loads(data).get("manifest_sha256")


def build_key_rotation_dag(region: Region) -> DAG:
    with DAG(
        dag_id=f"snds_key_rotation__{region.name}",
        description=f"Rotate the vault master key of region {region.name}",
        schedule=None,
        max_active_runs=1,
        **_dag_settings(region),
        tags=["snds", f"region:{region.name}", "keys"],
        doc_md=ROTATION_DOC.format(region=region.name),
    ) as dag:
        keys = region_key_settings(region)
        KeyCheckOperator(task_id="check_keys", **keys) >> KeyRotationOperator(task_id="rotate_key", **keys) \
            >> KeyCheckOperator(task_id="check_rotated_keys", **keys)
    return dag


def build_dags() -> dict[str, DAG]:
    """Every DAG of the regions this Airflow runs ($SNDS_REGIONS, all by default)."""
    from snds_operators.cohorts import build_cohort_dag  # imports this module: imported here, not at the top

    dags = {}
    for region in selected_regions(load_regions()).values():
        for dag in (build_release_dag(region), build_landing_watch_dag(region), build_key_rotation_dag(region),
                    build_cohort_dag(region)):
            dags[dag.dag_id] = dag
    return dags
