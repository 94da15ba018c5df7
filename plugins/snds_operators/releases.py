"""What the first tasks of a release run decide, as plain functions (tested without Airflow running):

- `resolve_release`: which release and which delivery a run processes: from the trigger form's
  Params, from the landing watch's Asset event, or else from the run's data interval: a scheduled
  (monthly) run, a backfill or a manual run without a release processes the interval's month M, whose
  release is `YYYY-MM`, delivered in `<landing_root>/YYYY-MM/`;
- `claim_release` / `release_claim`: at most one active run per region and release, whatever started
  it (schedule, backfill, UI, Asset): a second one is refused, not queued behind the first;
- `preflight`: the run-time half of sovereignty: the region's connections exist and point to the
  region, and every location the run will touch (paths, task arguments) is in the region's storage.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Callable, Iterable

from snds_operators.regions import Region
from spark_jobs.uris import SovereigntyError, is_s3, is_within, join

from snds_operators.landing import DEFAULT_RELEASE_PATTERN as RELEASE_PATTERN  # noqa: E402

#: The steps of a release run a user may select, each one job on the region's engine
#: (spark_jobs/<module>.py). The quality gates, the feasibility report and publish follow the steps
#: they audit: the clean gate runs with either clean step, the rest with the model.
STEPS = ("ingest", "clean_dcir", "clean_pmsi", "merge", "model")
#: Tasks that run when any of these steps is selected.
FOLLOWS = {"gate_clean": ("clean_dcir", "clean_pmsi"), "gate_model": ("model",),
           "feasibility_report": ("model",), "publish": ("model",)}
ACTIVE_STATES = ("queued", "running")


class ReleaseRunError(RuntimeError):
    """A run that must not go on; the message says why (the task fails without retry)."""


def safe_run_id(run_id: str) -> str:
    """A run id usable as a directory name (Airflow run ids contain ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id)


def expected_reports(steps: Iterable[str]) -> list[str]:
    """The reports a run that selected `steps` must end with, all successful: the steps and the
    gates, report and publish that follow them."""
    return [*steps, *(task for task, after in FOLLOWS.items() if set(after) & set(steps))]


def run_paths(lake_root: str, release: str, run_id: str) -> dict[str, str]:
    """The zones a run of `release` writes and its reports. The working zones (ingest, quarantine,
    truth, clean, merge) are the release's, each replaced atomically by the step that writes it; the
    model is the run's own (`model/release=R/run=<run>`), never replaced: audited by the gates, then
    published by a pointer switch (spark_jobs.publish), older versions staying readable."""
    run_dir = join(lake_root, "runs", f"release={release}", safe_run_id(run_id))
    paths = {zone: join(lake_root, zone, f"release={release}")
             for zone in ("ingest", "quarantine", "truth", "clean", "merge")}
    paths["model"] = join(lake_root, "model", f"release={release}", f"run={safe_run_id(run_id)}")
    paths["lake_root"] = lake_root
    paths["run_dir"] = run_dir
    paths["feasibility_html"] = join(run_dir, "feasibility.html")
    for step in (*STEPS, *FOLLOWS):
        paths[f"{step}_report"] = join(run_dir, "steps", f"{step}.json")
    return paths


def resolve_release(region: Region, params: dict, *, data_interval_start: dt.datetime | None = None,
                    asset_events: Iterable[dict] = ()) -> dict:
    """{release, input, trigger, steps, dry_run} of a run; ReleaseRunError when there is nothing to run
    or the delivery is outside the region's storage."""
    release, delivery = (params.get("release") or "").strip(), (params.get("input") or "").strip()
    events = [e for e in asset_events if (e or {}).get("release")]
    if release:
        trigger = "manual"
    elif events:
        release, delivery, trigger = events[-1]["release"], events[-1].get("input") or "", "asset"
    elif data_interval_start is not None:
        release, trigger = f"{data_interval_start:%Y-%m}", "schedule"
    else:
        raise ReleaseRunError("no release: give one in the trigger form (Params `release`), or let the "
                              "monthly schedule or the landing watch start the run")
    if not re.match(RELEASE_PATTERN, release):
        raise ReleaseRunError(f"release {release!r} must match {RELEASE_PATTERN}")
    from_landing = trigger != "manual" or not delivery  # the sensor checks it is complete
    delivery = delivery or join(region.landing_root, release)
    if not is_s3(delivery):
        delivery = str(Path(delivery).resolve())
    try:
        region.check_location(delivery, "delivery")
    except SovereigntyError as exc:
        raise ReleaseRunError(str(exc)) from None
    if not from_landing and not is_s3(delivery) and not Path(delivery).is_dir():
        raise ReleaseRunError(f"delivery directory {delivery!r} not found")
    steps = list(params.get("steps") or STEPS)
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        raise ReleaseRunError(f"unknown step(s) {unknown}; steps are {', '.join(STEPS)}")
    profile = resolve_profile(region, params.get("profile"))
    return {"release": release, "input": delivery, "trigger": trigger, "from_landing": from_landing,
            "steps": [s for s in STEPS if s in steps], "dry_run": bool(params.get("dry_run", False)),
            "profile": profile}


def resolve_profile(region: Region, chosen: str | None) -> str:
    """The run's delivery profile: the one chosen (a name under config/profiles/, a profile file, or
    `auto`), else the region's. ReleaseRunError when it cannot be loaded."""
    from spark_jobs.profiles import AUTO, ProfileError, load_profile, profile_path

    profile = (chosen or "").strip() or region.profile
    if profile == AUTO:
        return profile
    try:
        load_profile(profile)
        return profile if "/" not in profile and not profile.endswith(".yaml") else str(profile_path(profile))
    except ProfileError as exc:
        raise ReleaseRunError(f"profile: {exc}") from None


# --- one active run per region and release --------------------------------------------------------------
def _claim(release: str) -> str:
    """The claim object, relative to the lake root."""
    return f"runs/release={release}/ACTIVE_RUN.json"


def claim_release(region: Region, release: str, run_id: str, dag_id: str,
                  run_state: Callable[[str, str], str | None], store) -> dict:
    """Record `run_id` as the one active run of `release` in the region's lake `store`
    (spark_jobs.objectstore: an exclusive create, O_EXCL locally, a conditional PUT on S3). Refused
    (ReleaseRunError) while another run holds the claim and is still queued or running
    (`run_state(dag_id, run_id)`); a claim left by a finished or vanished run is taken over."""
    claim = {"run_id": run_id, "dag_id": dag_id,
             "claimed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    for _ in range(3):
        try:
            store.write_bytes(_claim(release), json.dumps(claim, sort_keys=True).encode(), exclusive=True)
            return claim
        except FileExistsError:
            pass
        try:
            holder = json.loads(store.read_bytes(_claim(release)))
        except FileNotFoundError:  # released meanwhile
            continue
        if holder.get("run_id") == run_id:
            return claim
        try:
            state = run_state(holder.get("dag_id", dag_id), holder.get("run_id", ""))
        except Exception:  # the holder's run no longer exists
            state = None
        if state in ACTIVE_STATES:
            raise ReleaseRunError(
                f"release {release} of region {region.name} is already being processed by run "
                f"{holder['run_id']} ({state}); this run is refused. Wait for it to finish, or mark it "
                "failed, then trigger again.")
        store.delete(_claim(release))  # stale: its run has finished without releasing it
    raise ReleaseRunError(f"could not claim release {release}: {store.uri(_claim(release))} keeps changing")


def release_claim(release: str, run_id: str, store) -> bool:
    """Drop the claim if this run holds it."""
    try:
        holder = json.loads(store.read_bytes(_claim(release)))
    except FileNotFoundError:
        return False
    if holder.get("run_id") != run_id:
        return False
    store.delete(_claim(release))
    return True


# --- preflight ---------------------------------------------------------------------------------------
#: Operator attributes holding a task's data arguments (what a job reads or writes), per operator kind.
_ARGUMENT_FIELDS = ("application_args", "job_driver", "configuration_overrides", "steps", "conf")
#: Attributes naming the job code: in the region's code root (bundle engines) or this checkout.
_CODE_FIELDS = ("application", "py_files")
_LOCATION = re.compile(r"^(/|file://|s3a?://)")


def _strings(value) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def task_locations(task) -> list[tuple[str, str]]:
    """(field, location) of every literal location in a task's arguments. Templated values are XCom
    references to prepare_run's paths or to the uploaded bundle, checked on their own."""
    found = []
    fields = getattr(task, "provider_kwargs", None) or {}
    for name in _ARGUMENT_FIELDS:
        for s in _strings(fields.get(name, getattr(task, name, None))):
            for part in s.split("=", 1)[-1:] if name == "conf" else [s]:
                if "{{" not in part and _LOCATION.match(part):
                    found.append((name, part))
    return found


def preflight(region: Region, paths: dict, tasks: Iterable, get_connection: Callable) -> dict:
    """Run-time sovereignty check; ReleaseRunError listing every problem. Returns what was checked."""
    from snds_operators.regions import BUNDLE_ENGINES, PROJECT_ROOT

    problems, checked = [], {"connections": {}, "locations": 0, "task_arguments": 0}
    needed = []
    if region.uses_aws:
        needed.append(("aws", region.aws_conn_id))
    if region.engine in ("spark-local", "spark-standalone"):
        needed.append(("spark", region.spark_conn_id))
    if region.audit["type"] == "connection":
        needed.append(("audit", region.audit["connection"]))
    for kind, conn_id in needed:
        try:
            conn = get_connection(conn_id)
        except Exception:
            problems.append(f"connection {conn_id!r} ({kind}) is not defined")
            continue
        if kind == "aws":
            conn_region = (conn.extra_dejson or {}).get("region_name")
            if conn_region != region.cloud_region:
                problems.append(f"connection {conn_id!r} points to AWS region {conn_region!r}, "
                                f"not the region's {region.cloud_region!r}")
            checked["connections"][conn_id] = conn_region
        elif kind == "audit":
            checked["connections"][conn_id] = conn.conn_type
        else:
            if conn.host != region.spark["master"]:
                problems.append(f"connection {conn_id!r} points to Spark master {conn.host!r}, "
                                f"not the region's {region.spark['master']!r}")
            checked["connections"][conn_id] = conn.host

    def check(uri: str, what: str) -> None:
        try:
            region.check_location(uri, what)
        except (SovereigntyError, ValueError) as exc:
            problems.append(str(exc))

    own = {"lake_root": region.lake_root, "landing_root": region.landing_root, "code_root": region.code_root,
           "vault_root": region.vault_root}
    if region.key_provider["type"] == "local_file":
        own["key file"] = region.key_provider["path"]
    for what, uri in {**own, **{k: v for k, v in paths.items() if isinstance(v, str) and _LOCATION.match(v)}}.items():
        check(uri, what)
        checked["locations"] += 1
    code_roots = [region.code_root] + ([] if region.engine in BUNDLE_ENGINES else [str(PROJECT_ROOT)])
    for task in tasks:
        for field, uri in task_locations(task):
            check(uri, f"task {task.task_id} {field}")
            checked["task_arguments"] += 1
        for field in _CODE_FIELDS:
            value = (getattr(task, "provider_kwargs", None) or {}).get(field, getattr(task, field, None))
            if isinstance(value, str) and value and "{{" not in value:
                if not any(is_within(value, root) for root in code_roots):
                    problems.append(f"task {task.task_id} {field} {value!r} is neither in the region's code root "
                                    "nor in this deployment's code")
    if problems:
        raise ReleaseRunError(f"preflight of region {region.name} failed: " + "; ".join(problems))
    return checked
