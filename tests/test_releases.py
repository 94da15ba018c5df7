"""The run-time decisions of a release run: which release, one active run per release, the
sovereignty preflight, and the jobs' own location check (no Airflow scheduler, no engine run)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import PROJECT_ROOT


def _regions(deployment="local"):
    from snds_operators.regions import load_regions

    return load_regions(deployment_name=deployment)


@pytest.fixture
def region(tmp_path):
    from helpers import write_test_region
    from snds_operators.regions import load_region

    regions = write_test_region(tmp_path, name="fr-paris")
    return load_region(regions / "fr-paris.yaml", "local")


def test_release_from_params_asset_event_or_data_interval(region, tmp_path):
    from snds_operators.releases import STEPS, resolve_release

    delivery = tmp_path / "incoming" / "2024-06"
    delivery.mkdir(parents=True)
    run = resolve_release(region, {"release": "2024-06", "input": str(delivery)})
    assert run == {"release": "2024-06", "input": str(delivery), "trigger": "manual", "from_landing": False,
                   "steps": list(STEPS), "dry_run": False, "profile": "native"}
    # No input: the release's directory in the landing zone, checked for completeness by the sensor.
    run = resolve_release(region, {"release": "2024-06"})
    assert run["input"] == f"{tmp_path}/landing/2024-06" and run["from_landing"]
    # The landing watch's Asset event names the release and its location.
    run = resolve_release(region, {}, asset_events=[{"release": "2024-05", "input": f"{tmp_path}/landing/2024-05"}])
    assert (run["release"], run["trigger"], run["input"]) == ("2024-05", "asset", f"{tmp_path}/landing/2024-05")
    # A scheduled run (or a backfill) of the month M processes the release YYYY-MM.
    run = resolve_release(region, {"release": ""}, data_interval_start=dt.datetime(2026, 2, 5, 6, tzinfo=dt.timezone.utc))
    assert (run["release"], run["trigger"], run["input"]) == ("2026-02", "schedule", f"{tmp_path}/landing/2026-02")
    # Params: a subset of steps, kept in pipeline order; a dry run.
    run = resolve_release(region, {"release": "r1", "steps": ["model", "merge"], "dry_run": True})
    assert run["steps"] == ["merge", "model"] and run["dry_run"] is True


@pytest.mark.parametrize("params, error", [
    ({}, "no release"),
    ({"release": "../x"}, "must match"),
    ({"release": "r", "input": "/nowhere/at/all"}, "outside the region's allowed storage"),
    ({"release": "r", "input": "s3://snds-us-east-landing/deliveries/r"}, "outside the region's allowed storage"),
    ({"release": "r", "steps": ["ingest", "publish"]}, "unknown step"),
])
def test_release_parameters_are_refused(region, params, error):
    from snds_operators.releases import ReleaseRunError, resolve_release

    with pytest.raises(ReleaseRunError, match=error):
        resolve_release(region, params)


def test_missing_explicit_delivery_is_refused(region, tmp_path):
    from snds_operators.releases import ReleaseRunError, resolve_release

    with pytest.raises(ReleaseRunError, match="not found"):
        resolve_release(region, {"release": "r", "input": str(tmp_path / "landing" / "none")})


def test_one_active_run_per_region_and_release(region):
    from snds_operators.factory import region_store
    from snds_operators.releases import ReleaseRunError, claim_release, release_claim

    store = region_store(region, region.lake_root)
    states = {"run_a": "running"}
    state = lambda dag_id, run_id: states.get(run_id)  # noqa: E731
    claim_release(region, "2024-06", "run_a", "snds_release__fr-paris", state, store)
    claim_release(region, "2024-06", "run_a", "snds_release__fr-paris", state, store)  # the same run again: fine
    with pytest.raises(ReleaseRunError, match="already being processed by run run_a \\(running\\)"):
        claim_release(region, "2024-06", "run_b", "snds_release__fr-paris", state, store)
    claim_release(region, "2024-07", "run_b", "snds_release__fr-paris", state, store)  # another release: fine
    # The holder finished without releasing (killed): its claim is stale and taken over.
    states["run_a"] = "failed"
    assert claim_release(region, "2024-06", "run_c", "snds_release__fr-paris", state, store)["run_id"] == "run_c"
    assert release_claim("2024-06", "run_a", store) is False  # not its claim any more
    assert release_claim("2024-06", "run_c", store) is True
    claim_release(region, "2024-06", "run_d", "snds_release__fr-paris", state, store)


def test_claim_on_s3_is_a_conditional_create(region, tmp_path):
    """The claim object is created with If-None-Match on S3 (local S3 server), like O_EXCL locally."""
    import dataclasses
    import uuid

    import boto3
    from moto.server import ThreadedMotoServer

    from snds_operators.releases import ReleaseRunError, claim_release, release_claim
    from spark_jobs.objectstore import open_store

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="eu-west-3",
                          aws_access_key_id="test", aws_secret_access_key="test")
        # moto's in-process servers share one state per test session: a bucket of this test's own.
        bucket = f"claims-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
        on_s3 = dataclasses.replace(region, lake_root=f"s3://{bucket}/lake")
        store = open_store(on_s3.lake_root, s3_client=s3)
        state = lambda dag_id, run_id: "running"  # noqa: E731
        claim_release(on_s3, "2024-06", "run_a", "d", state, store)
        body = s3.get_object(Bucket=bucket, Key="lake/runs/release=2024-06/ACTIVE_RUN.json")["Body"]
        assert json.loads(body.read())["run_id"] == "run_a"
        with pytest.raises(ReleaseRunError, match="already being processed"):
            claim_release(on_s3, "2024-06", "run_b", "d", state, store)
        assert release_claim("2024-06", "run_a", store)
        claim_release(on_s3, "2024-06", "run_b", "d", state, store)
    finally:
        server.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Conns:
    def __init__(self, conns: dict):
        self.conns = conns

    def __call__(self, conn_id):
        if conn_id not in self.conns:
            raise KeyError(conn_id)
        return self.conns[conn_id]


def _aws(region_name):
    return SimpleNamespace(extra_dejson={"region_name": region_name}, host=None)


def test_preflight_accepts_the_region_own_resources():
    from snds_operators.factory import build_release_dag
    from snds_operators.releases import preflight, run_paths

    region = _regions("production")["fr-paris"]
    dag = build_release_dag(region)
    paths = {**run_paths(region.lake_root, "2026-01", "r"), "input": "s3://snds-fr-paris-landing/deliveries/2026-01"}
    checked = preflight(region, paths, dag.tasks, _Conns({"aws_fr_paris": _aws("eu-west-3"),
                                                         "audit_fr_paris": SimpleNamespace(conn_type="postgres")}))
    assert checked["connections"] == {"aws_fr_paris": "eu-west-3", "audit_fr_paris": "postgres"}
    assert checked["locations"] >= 10 and checked["task_arguments"] > 0


@pytest.mark.parametrize("case, error", [
    ("missing connection", "connection 'aws_fr_paris' (aws) is not defined"),
    ("missing audit connection", "connection 'audit_fr_paris' (audit) is not defined"),
    ("connection in another region", "connection 'aws_fr_paris' points to AWS region 'us-east-1', not the region's 'eu-west-3'"),
    ("input in another region", "paths input 's3://snds-us-east-landing/deliveries/2026-01' is outside"),
    ("foreign task argument", "task merge application_args"),
])
def test_preflight_refuses_a_cross_wired_run(case, error):
    """The run-time half: what the parse-time check cannot see (connections, the run's own paths, a task
    changed after parsing) fails the preflight task, naming the problem."""
    from snds_operators.factory import build_release_dag
    from snds_operators.releases import ReleaseRunError, preflight, run_paths

    region = _regions("production")["fr-paris"]
    dag = build_release_dag(region)
    paths = {**run_paths(region.lake_root, "2026-01", "r"), "input": "s3://snds-fr-paris-landing/deliveries/2026-01"}
    conns = {"aws_fr_paris": _aws("eu-west-3"), "audit_fr_paris": SimpleNamespace(conn_type="postgres")}
    if case == "missing connection":
        conns = {}
    elif case == "missing audit connection":
        conns.pop("audit_fr_paris")
    elif case == "connection in another region":
        conns["aws_fr_paris"] = _aws("us-east-1")
    elif case == "input in another region":
        paths["input"] = "s3://snds-us-east-landing/deliveries/2026-01"
    else:
        dag.get_task("merge").provider_kwargs["job_driver"]["sparkSubmit"]["entryPointArguments"] += [
            "--output", "s3://snds-us-east-lake/lake/merge"]
        dag.get_task("merge").provider_kwargs["application_args"] = ["--output", "s3://snds-us-east-lake/x"]
    with pytest.raises(ReleaseRunError, match="preflight of region fr-paris failed") as err:
        preflight(region, paths, dag.tasks, _Conns(conns))
    assert error.replace("paths ", "") in str(err.value) or error in str(err.value), str(err.value)


def test_preflight_checks_the_spark_master():
    from snds_operators.factory import build_release_dag
    from snds_operators.releases import ReleaseRunError, preflight, run_paths

    region = _regions("local")["us-east"]
    dag = build_release_dag(region)
    paths = {**run_paths(region.lake_root, "r", "r"), "input": f"{region.landing_root}/r"}
    with pytest.raises(ReleaseRunError, match="points to Spark master 'spark://10.0.0.1:7077'"):
        preflight(region, paths, dag.tasks, _Conns({"spark_us_east_local": SimpleNamespace(host="spark://10.0.0.1:7077")}))
    ok = preflight(region, paths, dag.tasks, _Conns({"spark_us_east_local": SimpleNamespace(host=region.spark["master"])}))
    assert ok["connections"] == {"spark_us_east_local": "spark://127.0.0.1:7077"}


def test_a_job_refuses_locations_outside_its_allowed_roots(tmp_path, capsys):
    """Every step entry point re-checks its location arguments against the roots it is given, before
    reading anything, and writes no report into a foreign location."""
    from spark_jobs.merge import main

    own, foreign = tmp_path / "own", tmp_path / "foreign"
    argv = ["--engine", "duckdb", "--input", str(own / "clean"), "--output", str(foreign / "merge"),
            "--report", str(own / "merge.json"), "--release", "r", "--run-id", "t", "--allowed-root", str(own)]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert f"--output '{foreign}/merge' is outside the region's allowed storage ({own})" in out
    assert not (own / "merge.json").exists() and not foreign.exists()
    # The same arguments inside the roots get past the check (and fail later on the missing input).
    argv[argv.index("--output") + 1] = str(own / "merge")
    assert main(argv) == 1
    assert "outside the region" not in capsys.readouterr().out
    assert json.loads((own / "merge.json").read_text())["status"] == "failed"


def test_code_bundle_is_deterministic_and_self_contained(tmp_path):
    """The bundle a cluster runs: the same bytes for the same code, sql/ and config/ inside, no region
    files; a step started from it reads its SQL from the zip, not from this checkout."""
    import subprocess
    import sys
    import zipfile

    from spark_jobs.bundle import build

    first, second = build(tmp_path / "a"), build(tmp_path / "b")
    assert first["version"] == second["version"]
    zip_a = Path(first["files"]["snds_jobs.zip"])
    assert zip_a.read_bytes() == Path(second["files"]["snds_jobs.zip"]).read_bytes()
    names = zipfile.ZipFile(zip_a).namelist()
    assert "spark_jobs/clean.py" in names and "sql/clean/dcir/dcir_line_rules.sql" in names
    assert "config/clean.yaml" in names and not any(n.startswith("config/regions/") for n in names)
    # A fresh interpreter in another directory, the zip first on sys.path (as --py-files puts it):
    # spark_jobs and the SQL come from the zip, not from this checkout.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import spark_jobs.sqlrender as r, spark_jobs.bundle as b;"
            "print(b.code_origin()); print(r.SQL_DIR); print((r.SQL_DIR / 'merge' / 'dcir_items.sql').exists())")
    out = subprocess.run([sys.executable, "-c", code, str(zip_a)], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    origin, sql_dir, found = out.stdout.split()
    assert origin == str(zip_a) and "snds-bundle-" in sql_dir and found == "True"
    assert not sql_dir.startswith(str(PROJECT_ROOT))
