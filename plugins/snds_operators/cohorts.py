"""The study-cohort DAG of a region: `snds_cohorts__<region>`, one task per study of config/studies/.

Scheduled on the region's published-model Asset (`snds_model__<region>`, emitted by the release DAG's
`summarize` after a publish): each event names the release and run just published, and every study's
cohort is built over that version (spark_jobs/cohort.py: index population, attrition, the Trino SQL
for Athena), under `<lake>/cohorts/<study>/release=<R>/model_run=<run>/`. A manual trigger names a
release (and optionally a published run; default: the release's current version).

Parsing stays cheap: the study files are listed and read (YAML, JSON schema); DuckDB is imported only
when a task runs. A study file that does not validate does not break the region's DAGs: its task
fails at run time with the validation message (file and field).
"""

from __future__ import annotations

import re
from pathlib import Path

from airflow.sdk import DAG, Param, task

from snds_operators.regions import Region, configure_lake_io

try:  # Airflow 3.1+
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # pragma: no cover
    from airflow.exceptions import AirflowFailException

DOC = """\
### Study cohorts, region `{region}`

**Starts:** when a release of region `{region}` is published (Asset `snds_model__{region}`), or by hand
with `release` (and optionally `model_run_id`, a published run of it; empty: its current version).

**Tasks:** one per study file of `config/studies/` ({studies}). Each builds the study's index population
and attrition over the published model with DuckDB, and writes them with the same SQL for Athena
(Trino) under `{lake}/cohorts/<study>/release=<release>/model_run=<run>/`. A rebuild for the same
published run replaces that directory; other runs' cohorts stay. See docs/cohorts.md.
"""


def model_versions(params: dict | None, asset_events: list[dict]) -> list[tuple[str, str | None]]:
    """The (release, published run id or None for the current version) to build cohorts for: each
    Asset event's (events queued together make one run), else the trigger form's."""
    versions = []
    for extra in asset_events:
        version = (extra.get("release"), extra.get("run_id"))
        if version[0] and version not in versions:
            versions.append(version)
    if versions:
        return versions
    release = (params or {}).get("release") or ""
    if not release:
        raise AirflowFailException("no release: this run was not started by a publication; trigger it with a "
                                   "release (and optionally model_run_id)")
    return [(release, (params or {}).get("model_run_id") or None)]


def _task_id(stem: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", stem) or "study"


def cohort_task(region: Region, study_file: Path, task_id: str, problem: str | None):
    """The task building one study's cohorts; `problem`: the study file's validation error, raised
    when the task runs."""

    @task(task_id=task_id)
    def build_study_cohort(params=None, triggering_asset_events=None) -> list[dict]:
        from spark_jobs.cohort import CohortError, StudyError, build_cohort

        if problem:
            raise AirflowFailException(problem)
        events = [ev.extra or {} for evs in (triggering_asset_events or {}).values() for ev in evs]
        configure_lake_io(region)
        built = []
        for release, run_id in model_versions(params, events):
            try:
                report = build_cohort(region.lake_root, region=region.name, release=release, study=study_file,
                                      model_run_id=run_id, memory_limit=region.duckdb.get("memory_limit"),
                                      threads=region.duckdb.get("threads"))
            except (StudyError, CohortError) as exc:
                raise AirflowFailException(str(exc)) from None
            for row in report["attrition"]:
                print(f"{row['step']} {row['criterion']:<17} {row['patients']:>10,} (-{row['removed']:,})  "
                      f"{row['description']}")
            print(f"study {report['study']}, release {release}, run {report['model_run_id']}: "
                  f"{report['totals']['patients']:,} patients -> {report['location']}")
            built.append({"release": release, "model_run_id": report["model_run_id"], "location": report["location"],
                          "patients": report["totals"]["patients"]})
        return built

    return build_study_cohort()


def build_cohort_dag(region: Region, studies_dir: Path | None = None) -> DAG:
    """The region's cohort DAG: scheduled on its published-model Asset, one task per study file."""
    from snds_operators.factory import RELEASE_PATTERN, _dag_settings, model_asset
    from spark_jobs.cohort import STUDIES_DIR, StudyError, list_studies, load_study

    studies = []
    for path in list_studies(studies_dir):
        try:
            studies.append((path, load_study(path)["name"], None))
        except StudyError as exc:
            studies.append((path, _task_id(path.stem), str(exc)))
    with DAG(
        dag_id=f"snds_cohorts__{region.name}",
        description=f"Study cohorts over the published model, region {region.name}",
        schedule=[model_asset(region)],
        max_active_runs=1,
        **_dag_settings(region),
        tags=["snds", f"region:{region.name}", "cohorts"],
        doc_md=DOC.format(region=region.name, lake=region.lake_root,
                          studies=", ".join(f"`{name}`" for _, name, _ in studies)
                          or f"none in {studies_dir or STUDIES_DIR}"),
        params={
            "release": Param("", type="string", pattern=f"^$|{RELEASE_PATTERN}", title="Release",
                             description="Published release id, e.g. 2024-06 (manual runs)."),
            "model_run_id": Param("", type="string", title="Published run",
                                  description="A published run of the release; empty: its current version."),
        },
    ) as dag:
        for path, task_id, problem in studies:
            cohort_task(region, path, task_id, problem)
    return dag
