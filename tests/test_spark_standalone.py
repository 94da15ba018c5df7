"""Smoke test of a real Spark standalone cluster (master + 2 single-core workers on loopback).

A job is submitted with spark-submit --py-files, from a directory outside the project and without
the project on PYTHONPATH: the driver and the executors can only get the `tinyjob` package from the
zip. The test checks that the Python UDF from the zip ran on both executors (one per worker), with
this venv's Python, and that the master saw the application with 2 cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest


pytestmark = pytest.mark.spark

N_ROWS = 80
N_PARTITIONS = 8

UDFS = '''\
"""Functions shipped to the executors in tiny.zip."""
import os
import sys
import time


def square_plus_one(x):
    time.sleep(0.01)  # a little work, so that both executors get tasks
    return x * x + 1


def where_am_i():
    """Where this Python task runs: the executor's work dir (.../app-ID/EXECUTOR-ID), pid, partition."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    return {
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "partition": ctx.partitionId(),
        "python": sys.executable,
        "version": sys.version.split()[0],
        "module": __file__,
    }
'''

DRIVER = '''\
import json
import sys
import time

t0 = time.monotonic()

import tinyjob
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from tinyjob.udfs import square_plus_one, where_am_i

out = sys.argv[1]
# Pickled rows, not Arrow batches: the Python workers then need not import pyarrow/pandas (faster start).
spark = (
    SparkSession.builder.appName("tinyjob-smoke")
    .config("spark.sql.execution.pythonUDF.arrow.enabled", "false")
    .getOrCreate()
)
sc = spark.sparkContext
sc.setLogLevel("WARN")
t_session = time.monotonic()

where_type = T.MapType(T.StringType(), T.StringType())
square_udf = F.udf(square_plus_one, T.LongType())
where_udf = F.udf(lambda _id: {k: str(v) for k, v in where_am_i().items()}, where_type).asNondeterministic()

df = spark.range(0, @N_ROWS@, numPartitions=@N_PARTITIONS@)
rows = df.select("id", square_udf("id").alias("y"), where_udf("id").alias("where")).collect()
t_job = time.monotonic()

executors = [
    {"host": e.host(), "port": e.port()}
    for e in sc._jsc.sc().statusTracker().getExecutorInfos()
]
with open(out, "w") as f:
    json.dump({
        "app_id": sc.applicationId,
        "master": sc.master,
        "default_parallelism": sc.defaultParallelism,
        "driver_python": sys.executable,
        "driver_version": sys.version.split()[0],
        "tinyjob_file": tinyjob.__file__,
        "executors": executors,
        "session_s": round(t_session - t0, 1),
        "job_s": round(t_job - t_session, 1),
        "rows": [{"id": r["id"], "y": r["y"], "where": dict(r["where"])} for r in rows],
    }, f)
spark.stop()
'''.replace("@N_ROWS@", str(N_ROWS)).replace("@N_PARTITIONS@", str(N_PARTITIONS))


def _build_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("tinyjob/__init__.py", '"""A tiny package that exists only in tiny.zip."""\n')
        z.writestr("tinyjob/udfs.py", UDFS)
    return path


def _watch_master(cluster, app_name: str, stop: threading.Event, seen: dict) -> None:
    """Record the largest core count the master reports for the running application."""
    while not stop.is_set():
        try:
            for app in cluster.status(timeout=2).get("activeapps", []):
                if app.get("name") == app_name:
                    seen["id"] = app["id"]
                    seen["cores"] = max(seen.get("cores", 0), app.get("cores", 0))
        except Exception:
            pass
        stop.wait(0.3)


def test_job_runs_on_both_workers_with_zip_udf(spark_standalone, tmp_path):
    cluster = spark_standalone
    print(f"\n[spark_standalone] cluster start-up: {cluster.startup_seconds:.1f} s")
    assert cluster.worker_count() == 2

    pkg_dir = tmp_path / "pkg"
    pkg_dir.mkdir()
    tiny_zip = _build_zip(pkg_dir / "tiny.zip")
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    driver = job_dir / "driver.py"
    driver.write_text(DRIVER)
    out = tmp_path / "out.json"
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    env = cluster.submit_env()
    env.pop("PYTHONPATH", None)
    cmd = [str(Path(sys.executable).parent / "spark-submit"), "--master", cluster.master_url]
    for key, value in cluster.submit_conf(executor_memory="1g").items():
        cmd += ["--conf", f"{key}={value}"]
    cmd += [
        "--py-files", str(tiny_zip),
        str(driver), str(out),
    ]
    seen: dict = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_master, args=(cluster, "tinyjob-smoke", stop, seen), daemon=True)
    watcher.start()
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=run_dir, env=env, capture_output=True, text=True, timeout=120)
    finally:
        stop.set()
        watcher.join()
    submit_s = time.monotonic() - t0
    print(f"[spark_standalone] spark-submit: {submit_s:.1f} s")
    assert proc.returncode == 0, (
        f"spark-submit failed (rc={proc.returncode})\n--- stderr tail:\n"
        + "\n".join(proc.stderr.splitlines()[-40:]) + "\n" + cluster.logs_tail(15)
    )
    result = json.loads(out.read_text())
    print(f"[spark_standalone] driver: SparkSession {result['session_s']} s (incl. waiting for both executors), "
          f"job {result['job_s']} s")

    # The driver got tinyjob from the zip (nothing else provides it).
    assert "tiny.zip" in result["tinyjob_file"], result["tinyjob_file"]
    assert result["master"] == cluster.master_url
    assert result["default_parallelism"] == 2

    # UDF results are right, and every partition ran.
    rows = result["rows"]
    assert sorted(r["id"] for r in rows) == list(range(N_ROWS))
    assert all(r["y"] == r["id"] * r["id"] + 1 for r in rows)
    where = [r["where"] for r in rows]
    assert {int(w["partition"]) for w in where} == set(range(N_PARTITIONS))

    # Python tasks ran in executors' work dirs (.../worker-N/app-ID/EXEC-ID) under both workers,
    # with this venv's Python and the module from the zip.
    app_id = result["app_id"]
    by_partition = {int(w["partition"]): (Path(w["cwd"]).parent.parent.name, Path(w["cwd"]).name, w["pid"])
                    for w in where}
    print("[spark_standalone] partition -> (worker dir, executor id, python pid):")
    for part, loc in sorted(by_partition.items()):
        print(f"    {part}: {loc}")
    assert {Path(w["cwd"]).parent.name for w in where} == {app_id}
    assert {loc[0] for loc in by_partition.values()} == {"worker-0", "worker-1"}
    assert len({loc[1] for loc in by_partition.values()}) == 2
    assert len({loc[2] for loc in by_partition.values()}) >= 2
    assert {w["python"] for w in where} == {sys.executable}
    assert {w["version"] for w in where} == {result["driver_version"]} == {sys.version.split()[0]}
    assert all("tiny.zip" in w["module"] for w in where), {w["module"] for w in where}
    # statusTracker: the driver plus two executors.
    assert len(result["executors"]) == 3, result["executors"]

    # The master: the application ran with 2 cores and is now completed; each worker ran one executor of it.
    assert seen.get("id") == app_id and seen.get("cores") == 2, seen
    status = cluster.status()
    completed = {a["id"]: a for a in status["completedapps"]}
    assert app_id in completed and completed[app_id]["name"] == "tinyjob-smoke", status["completedapps"]
    assert completed[app_id]["state"] == "FINISHED" and completed[app_id]["cores"] == 2, completed[app_id]
    print(f"[spark_standalone] master: running app had {seen['cores']} cores; completed app entry: {completed[app_id]}")
    for i in range(2):
        finished = cluster.worker_status(i)["finishedexecutors"]
        assert [e["appid"] for e in finished if e["appid"] == app_id] == [app_id], finished


def test_release_dag_on_the_standalone_cluster(spark_standalone, synth_delivery, synth_truth, tmp_path):
    """us-east's local variant (engine spark-standalone) against the real cluster: the release DAG packages
    the code bundle, each selected step is spark-submitted to the master with the zip as --py-files (the
    driver reads its SQL from the zip, argon2 runs in the executors' Python workers), and the zones equal
    what DuckDB computes from the same delivery with the same key.

    The steps are ingest and both clean steps (and the clean gate that follows them): every later step is the same entry point code submitted
    the same way, and runs on Spark in the spark-local end-to-end test (test_release_dag_e2e)."""
    from helpers import ingest_delivery, region_key_file, run_release_dag, run_steps_after_ingest, table_rows
    from helpers import write_test_region

    cluster = spark_standalone
    region_key_file(tmp_path / "secure" / "keys")  # the tests' pepper: the reference below gets the same pseudonyms
    conf = {**cluster.submit_conf(), "spark.sql.shuffle.partitions": "4"}
    regions = write_test_region(tmp_path, name="us-east", roots=(synth_delivery.parent,),
                                overrides={"spark": {"master": cluster.master_url, "conf": conf}})
    before = {a["id"] for a in cluster.status().get("completedapps", [])}
    steps = ("ingest", "clean_dcir", "clean_pmsi")
    proc = run_release_dag(tmp_path, synth_delivery, None, "standalone", region="us-east", regions=regions,
                           args=("--steps", ",".join(steps)))
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-4000:]
    assert "■ package_code: success" in proc.stdout
    summary = json.loads(Path(proc.stdout.strip().splitlines()[-1]).read_text())
    assert summary["status"] == "success" and summary["engine"] == "spark-standalone"
    assert summary["steps_selected"] == list(steps)
    bundles = list((tmp_path / "code").glob("*/snds_jobs.zip"))
    assert len(bundles) == 1
    submitted = (*steps, "gate_clean")  # the clean gate follows the clean steps
    for step in submitted:
        report = summary["steps"][step]
        assert report["status"] == "success"
        assert report["engine"] == "spark" and report["code"] == str(bundles[0]), (step, report.get("code"))
    assert "merge" not in summary["steps"] and "publish" not in summary["steps"]
    ps = summary["steps"]["ingest"]["pseudonymisation"]
    assert ps["hashed"] == ps["identifiers"] > 0

    # Each step was an application of the cluster, with both single-core executors.
    apps = [a for a in cluster.status().get("completedapps", []) if a["id"] not in before]
    assert len(apps) == len(submitted) and all(a["name"].startswith("snds-standalone-") for a in apps), apps
    assert all(a["cores"] == 2 for a in apps), [(a["name"], a["cores"]) for a in apps]

    # The same zones as DuckDB computes (same delivery, same pepper and argon2 parameters).
    ref = tmp_path / "reference"
    ingest_delivery("duckdb", synth_delivery, ref, vault_dir=ref / "vault")
    run_steps_after_ingest("duckdb", ref / "ingest", ref)
    lake = tmp_path / "lake"
    compared = 0
    for ours, ref_zone in ((lake / "ingest" / "release=standalone", ref / "ingest"),
                           (lake / "clean" / "release=standalone", ref / "clean")):
        tables = sorted(p.parent.relative_to(ref_zone) for p in ref_zone.rglob("*.parquet"))
        for table in sorted(set(tables)):
            assert table_rows(ours / table) == table_rows(ref_zone / table), (ours, table)
            compared += 1
    assert compared > 30
