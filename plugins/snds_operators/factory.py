"""Builds the release DAG of each region from config/regions/*.yaml.

The DAG file (dags/snds_release.py) only calls `build_release_dags()`; everything here is cheap to
import (no DuckDB, Spark or pandas): the steps run in their own processes.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from airflow.sdk import DAG, Param, task

from snds_operators.encryption import KeyCheckOperator, KeyRotationOperator, VaultUpdateOperator, region_key_settings
from snds_operators.operators import step_operator
from snds_operators.regions import Region, load_regions

RELEASE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
#: The steps of a release run, each one job on the region's engine (spark_jobs/<module>.py).
STEPS = ("ingest", "clean_dcir", "clean_pmsi", "merge", "model")

DOC = """\
### SNDS release pipeline, region `{region}`

Turns one SNDS delivery (a directory of CSV files as CNAM delivers them) into the lake of region
`{region}` (`{lake}`), on the `{engine}` engine.

Trigger with the release id and the delivery directory, e.g.
`{{"release": "2024-06", "input": "/data/snds/deliveries/2024-06"}}`.

Steps: `prepare_run` (checks the parameters, fixes the run's paths) -> `check_keys` (the region's key
opens its vault, kept apart from the lake at `{vault}`) -> `ingest` (CSV -> typed, pseudonymised
Parquet + quarantine) -> `update_vault` (new identifiers sealed into a new vault version) ->
`clean_dcir` and `clean_pmsi` in parallel (the cleaning rules, with rows removed per rule) -> `merge`
(item tables by year and source) -> `model` (the event tables) -> `summarize` (writes
`runs/release=<release>/<run>/summary.json`). Each step replaces its zone of the release atomically.
"""

ROTATION_DOC = """\
### Key rotation, region `{region}`

Trigger by hand. Creates a new master key (local key ring: the previous key is kept, retired, so older
vault versions stay readable; KMS: the configured key) and re-wraps the current vault version under it
without re-hashing any identifier. Pseudonyms do not change.
"""


def safe_run_id(run_id: str) -> str:
    """A run id usable as a directory name (Airflow run ids contain ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id)


def run_paths(lake_root: Path, release: str, run_id: str) -> dict[str, str]:
    """The zones a run of `release` writes (each step replaces its zone atomically) and its reports."""
    run_dir = lake_root / "runs" / f"release={release}" / safe_run_id(run_id)
    paths = {zone: str(lake_root / zone / f"release={release}")
             for zone in ("ingest", "quarantine", "clean", "merge", "model")}
    paths["run_dir"] = str(run_dir)
    for step in STEPS:
        paths[f"{step}_report"] = str(run_dir / "steps" / f"{step}.json")
    return paths


def _xcom(key: str) -> str:
    return "{{ ti.xcom_pull(task_ids='prepare_run')['" + key + "'] }}"


#: Settings every DAG of a region shares: triggered by hand, one run at a time (runs of one region
#: write the same release directories and the same vault), no automatic retry (failures are
#: deterministic: a bad delivery or a wrong key fails again).
REGION_DAG_SETTINGS = {
    "schedule": None,
    "start_date": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    "catchup": False,
    "max_active_runs": 1,
    "default_args": {"retries": 0},
}


def build_release_dag(region: Region) -> DAG:
    with DAG(
        dag_id=f"snds_release__{region.name}",
        description=f"SNDS delivery -> lake, region {region.name} ({region.engine})",
        **REGION_DAG_SETTINGS,
        tags=["snds", f"region:{region.name}", f"engine:{region.engine}"],
        doc_md=DOC.format(region=region.name, lake=region.lake_root, engine=region.engine, vault=region.vault_root),
        params={
            "release": Param("", type="string", pattern=RELEASE_PATTERN,
                             description="Data release id, e.g. 2024-06"),
            "input": Param("", type="string", minLength=1,
                           description="Delivery directory (CSV files as CNAM delivers them)"),
        },
    ) as dag:

        @task(task_id="prepare_run")
        def prepare_run(params: dict | None = None, run_id: str | None = None) -> dict[str, str]:
            release, delivery = params["release"], params["input"]
            if not re.match(RELEASE_PATTERN, release or ""):
                raise ValueError(f"release {release!r} must match {RELEASE_PATTERN}")
            if not Path(delivery).is_dir():
                raise FileNotFoundError(f"delivery directory {delivery!r} not found")
            paths = run_paths(region.lake_root, release, run_id)
            paths.update(release=release, input=str(Path(delivery).resolve()), run_id=run_id)
            Path(paths["run_dir"], "steps").mkdir(parents=True, exist_ok=True)
            return paths

        common = ["--release", _xcom("release"), "--run-id", _xcom("run_id"), "--config", str(region.ingest_config)]
        ingest = step_operator(
            task_id="ingest", step="ingest", region=region,
            step_args=["--input", _xcom("input"), "--output", _xcom("ingest"), "--quarantine", _xcom("quarantine"),
                       "--report", _xcom("ingest_report"), *common, *region.pseudonymisation_args()],
        )
        clean = {
            source: step_operator(
                task_id=f"clean_{source}",
                step="clean",
                region=region,
                step_args=["--source", source, "--input", _xcom("ingest"),
                           "--output", _xcom("clean") + f"/{source}", "--report", _xcom(f"clean_{source}_report"),
                           *common],
            )
            for source in ("dcir", "pmsi")
        }
        merge = step_operator(
            task_id="merge", step="merge", region=region,
            step_args=["--input", _xcom("clean"), "--output", _xcom("merge"), "--report", _xcom("merge_report"),
                       *common],
        )
        model = step_operator(
            task_id="model", step="model", region=region,
            step_args=["--input", _xcom("merge"), "--ingest", _xcom("ingest"), "--output", _xcom("model"),
                       "--report", _xcom("model_report"), *common],
        )
        keys = region_key_settings(region)
        check_keys = KeyCheckOperator(task_id="check_keys", **keys)
        update_vault = VaultUpdateOperator(task_id="update_vault", **keys)

        @task(task_id="summarize", trigger_rule="all_done")
        def summarize(paths: dict[str, str], ti=None) -> str:
            from spark_jobs.report import assemble_summary, human_summary, write_json_atomic

            run_dir = Path(paths["run_dir"])
            # Key fingerprints and counts only: the encryption tasks return no secret and no identifier.
            encryption = {"check_keys": ti.xcom_pull(task_ids="check_keys"),
                          "update_vault": ti.xcom_pull(task_ids="update_vault")}
            path = assemble_summary(
                run_dir, region=region.name, release=paths["release"], run_id=paths["run_id"],
                engine=region.engine, input_uri=paths["input"],
                truth_manifest=Path(paths["input"]) / "_truth" / "manifest.json",
                extra={"encryption": encryption},
            )
            with open(path, encoding="utf-8") as fh:
                summary = json.load(fh)
            for line in human_summary(summary).splitlines():
                print(line)
            write_json_atomic(run_dir.parent / "latest.json", {"run_id": paths["run_id"], "summary": str(path)})
            print(f"summary: {path}")
            if summary["status"] != "success":
                raise RuntimeError(f"release run failed; see {path}")
            return str(path)

        paths = prepare_run()
        done = summarize(paths)
        paths >> check_keys >> ingest >> update_vault >> [clean["dcir"], clean["pmsi"]] >> merge >> model >> done
    return dag


def build_key_rotation_dag(region: Region) -> DAG:
    with DAG(
        dag_id=f"snds_key_rotation__{region.name}",
        description=f"Rotate the vault master key of region {region.name}",
        **REGION_DAG_SETTINGS,
        tags=["snds", f"region:{region.name}", "keys"],
        doc_md=ROTATION_DOC.format(region=region.name),
    ) as dag:
        keys = region_key_settings(region)
        KeyCheckOperator(task_id="check_keys", **keys) >> KeyRotationOperator(task_id="rotate_key", **keys) \
            >> KeyCheckOperator(task_id="check_rotated_keys", **keys)
    return dag


def build_release_dags() -> dict[str, DAG]:
    dags = {}
    for region in load_regions().values():
        for dag in (build_release_dag(region), build_key_rotation_dag(region)):
            dags[dag.dag_id] = dag
    return dags
