"""The step entry points on an S3 lake (a local S3 server, moto), as EMR runs them with s3:// URIs:
the delivery is listed and read on S3, zones are written as versions switched in by a pointer object,
footers and reports are read and written there, and every file equals the local run's byte for byte.

Spark cannot reach S3 here (no hadoop-aws jar without Maven), so the engine is DuckDB; the I/O around
the engine (lakefs) is the same code on both engines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import FAST_ARGON2_ARGS, region_key_file
from s3server import new_bucket, s3_client

RELEASE = "2026-01"
ZONES = ("ingest", "quarantine", "clean/dcir", "clean/pmsi", "merge", "model")


def _upload_tree(client, root: Path, bucket: str, prefix: str) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root).as_posix()}")


def _run_steps(lake: str, delivery: str, secure: Path, run_id: str, steps=("ingest", "clean_dcir", "clean_pmsi",
                                                                            "merge", "model"), extra=()) -> dict:
    """Run the step entry points (`main(argv)`, what spark-submit and the DuckDB operator call) on a
    lake root; returns each step's exit code."""
    from spark_jobs import clean, ingest, merge, model

    run = f"{lake}/runs/release={RELEASE}"
    common = ["--engine", "duckdb", "--release", RELEASE, "--run-id", run_id, *extra]
    report = lambda step: ["--report", f"{run}/{run_id}/steps/{step}.json"]  # noqa: E731
    argv = {
        "ingest": (ingest.main, ["--input", delivery, "--output", f"{run}/ingest", "--quarantine", f"{run}/quarantine",
                                 "--vault", str(secure / "vault"), "--key-file",
                                 str(region_key_file(secure / "keys").path), *FAST_ARGON2_ARGS]),
        "clean_dcir": (clean.main, ["--source", "dcir", "--input", f"{run}/ingest", "--output", f"{run}/clean/dcir"]),
        "clean_pmsi": (clean.main, ["--source", "pmsi", "--input", f"{run}/ingest", "--output", f"{run}/clean/pmsi"]),
        "merge": (merge.main, ["--input", f"{run}/clean", "--output", f"{run}/merge"]),
        "model": (model.main, ["--input", f"{run}/merge", "--ingest", f"{run}/ingest", "--clean", f"{run}/clean",
                                "--output", f"{run}/model"]),
    }
    return {step: argv[step][0]([*common, *argv[step][1], *report(step)]) for step in steps}


def _zone_files(zone: str) -> dict[str, bytes]:
    """relative path -> bytes of a zone's current files."""
    from spark_jobs import lakefs

    current = lakefs.current(zone)
    return {str(p)[len(str(current)) + 1:]: lakefs.read_bytes(p) for p in lakefs.list_files(current)}


def _versions(client, bucket: str, zone_key: str) -> list[str]:
    """The versions with objects under `<zone>/_v/` (pyarrow leaves empty "directory" marker objects
    behind when it deletes: they hold nothing)."""
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{zone_key}/_v/").get("Contents", [])
    return sorted({obj["Key"][len(zone_key) + 4:].split("/", 1)[0] for obj in listed if not obj["Key"].endswith("/")})


@pytest.fixture
def s3_lake(s3_env, synth_delivery):
    """A lake bucket with the synthetic delivery (and its truth) in its landing prefix."""
    client = s3_client(s3_env)
    bucket = new_bucket(client, "lake")
    _upload_tree(client, synth_delivery, bucket, f"landing/{RELEASE}")
    return client, bucket


def test_steps_on_an_s3_lake_write_what_they_write_locally(s3_lake, synth_delivery, tmp_path):
    from spark_jobs import lakefs
    from spark_jobs.report import assemble_summary

    client, bucket = s3_lake
    lake = f"s3://{bucket}/lake"
    codes = _run_steps(lake, f"s3://{bucket}/landing/{RELEASE}", tmp_path / "s3-secure", "r1",
                       extra=["--allowed-root", f"s3://{bucket}", "--allowed-root", str(tmp_path)])
    assert set(codes.values()) == {0}, codes
    local = tmp_path / "lake"
    assert set(_run_steps(str(local), str(synth_delivery), tmp_path / "local-secure", "r1").values()) == {0}

    run = f"{lake}/runs/release={RELEASE}"
    for zone in ZONES:
        on_s3 = _zone_files(f"{run}/{zone}")
        here = {str(p.relative_to(local / "runs" / f"release={RELEASE}" / zone)): p.read_bytes()
                for p in sorted((local / "runs" / f"release={RELEASE}" / zone).rglob("*.parquet"))}
        assert on_s3 and on_s3 == here, zone
        # One version, named by the pointer object; nothing else under the zone's prefix.
        key = f"lake/runs/release={RELEASE}/{zone}"
        assert len(_versions(client, bucket, key)) == 1
        pointer = client.get_object(Bucket=bucket, Key=f"{key}/_CURRENT")["Body"].read().decode().strip()
        assert pointer == f"_v/{_versions(client, bucket, key)[0]}" and pointer.startswith("_v/r1-")

    # The step reports are on S3; the summary assembled from them passes the generator's truth check.
    summary_path = assemble_summary(f"{run}/r1", region="fr-paris", release=RELEASE, run_id="r1", engine="duckdb",
                                    input_uri=f"s3://{bucket}/landing/{RELEASE}",
                                    truth_manifest=f"s3://{bucket}/landing/{RELEASE}/_truth/manifest.json")
    summary = lakefs.read_json(summary_path)
    assert str(summary_path) == f"{run}/r1/summary.json"
    assert summary["status"] == "success" and summary["truth_check"]["status"] == "match", summary.get("truth_check")
    assert summary["steps"]["ingest"]["tables"]["ER_PRS_F"]["path"] == f"{run}/ingest/ER_PRS_F"
    local_report = json.loads((local / "runs" / f"release={RELEASE}" / "r1" / "steps" / "model.json").read_text())
    assert summary["steps"]["model"]["totals"] == local_report["totals"]


def test_an_s3_zone_is_replaced_by_a_pointer_switch_and_a_failed_run_changes_nothing(s3_lake, tmp_path, monkeypatch):
    from spark_jobs import lakefs
    from spark_jobs.steprun import StagedOutputs

    client, bucket = s3_lake
    lake = f"s3://{bucket}/lake"
    secure = tmp_path / "secure"
    assert set(_run_steps(lake, f"s3://{bucket}/landing/{RELEASE}", secure, "r1").values()) == {0}
    key = f"lake/runs/release={RELEASE}/model"
    model = f"{lake}/runs/release={RELEASE}/model"
    first, first_files = _versions(client, bucket, key), _zone_files(model)

    # A rerun writes a new version, switches the pointer to it and deletes the old one: same bytes.
    assert _run_steps(lake, "unused", secure, "r2", steps=("model",)) == {"model": 0}
    second = _versions(client, bucket, key)
    assert len(second) == 1 and second != first and second[0].startswith("r2-")
    assert _zone_files(model) == first_files

    # A run failing half-way (after some tables are written) leaves the current version as it was,
    # and its own version is deleted.
    real_write = StagedOutputs.write_view
    written = []

    def failing_write(self, *args, **kwargs):
        written.append(args[1])
        if len(written) == 3:
            raise OSError("simulated write failure")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(StagedOutputs, "write_view", failing_write)
    assert _run_steps(lake, "unused", secure, "r3", steps=("model",)) == {"model": 2}
    assert _versions(client, bucket, key) == second and _zone_files(model) == first_files
    report = lakefs.read_json(f"{lake}/runs/release={RELEASE}/r3/steps/model.json")
    assert report["status"] == "failed" and report["error"] == "OSError: simulated write failure"


def test_lake_paths_and_listing(s3_lake):
    """LakePath joins like pathlib on both kinds of location; listings are recursive, sorted and
    filtered by suffix; an absent prefix lists nothing."""
    from spark_jobs import lakefs
    from spark_jobs.lakefs import LakePath

    client, bucket = s3_lake
    root = LakePath(f"s3a://{bucket}//landing/")
    assert str(root) == f"s3://{bucket}/landing" and root.name == "landing"
    assert str(root / RELEASE / "ER_PRS_F.csv") == f"s3://{bucket}/landing/{RELEASE}/ER_PRS_F.csv"
    assert str((root / "a" / "b").with_name("c")) == f"s3://{bucket}/landing/a/c"
    assert str(LakePath("file:///tmp/x") / "y") == "/tmp/x/y"
    with pytest.raises(ValueError, match="unsupported location"):
        LakePath("gs://bucket/x")
    with pytest.raises(ValueError, match="a local path is needed"):
        root.local()
    files = lakefs.list_files(root / RELEASE, ".csv")
    assert files and all(str(f).endswith(".csv") for f in files) and files == sorted(files, key=str)
    truth = root / RELEASE / "_truth"
    assert lakefs.list_files(truth, recursive=False) == [truth / "manifest.json"]
    assert truth / "events" / "patients.csv" in lakefs.list_files(truth)
    assert lakefs.list_files(root / "nothing-here") == [] and not lakefs.exists(root / "nothing-here")
    assert lakefs.exists(root / RELEASE) and lakefs.is_file(root / RELEASE / "_truth" / "manifest.json")
    assert lakefs.read_first_line(files[0]).endswith(b"\n")
    # A zone without a pointer (written by hand) is read where it is.
    assert lakefs.current(root / RELEASE) == root / RELEASE


def test_duckdb_s3_lookups_retry_a_failed_request_and_tell_missing_from_failing(s3_lake, monkeypatch, caplog):
    """DuckDB checks a path with fsspec's `exists` before reading it, which answers False on any
    error: a failed request would read as "no files found". Here a lookup that fails is tried again,
    only a missing object is False, and a lookup failing every time raises."""
    import duckdb
    from fsspec.implementations.arrow import ArrowFSWrapper

    from spark_jobs import lakefs

    client, bucket = s3_lake
    monkeypatch.setattr(lakefs, "S3_RETRY_PAUSES", (0, 0, 0))
    real_info, failures = ArrowFSWrapper.info, []

    def flaky_info(self, path, **kwargs):
        if len(failures) < failures_wanted:
            failures.append(path)
            raise OSError("When getting information for key: AWS Error NETWORK_CONNECTION (simulated)")
        return real_info(self, path, **kwargs)

    monkeypatch.setattr(ArrowFSWrapper, "info", flaky_info)
    fs = lakefs.duckdb_s3_filesystem()
    manifest = f"{bucket}/landing/{RELEASE}/_truth/manifest.json"
    failures_wanted = 3
    assert fs.exists(manifest) and len(failures) == 3
    assert "trying again" in caplog.text
    assert not fs.exists(f"{bucket}/landing/{RELEASE}/no-such-file.csv")
    con = duckdb.connect()
    con.register_filesystem(fs)
    failures.clear()
    assert con.execute(f"SELECT count(*) FROM read_json('s3://{manifest}')").fetchone() == (1,)
    failures.clear()
    failures_wanted = 99
    with pytest.raises(OSError, match="simulated"):
        fs.exists(manifest)
    with pytest.raises(duckdb.Error, match="simulated"):
        con.execute(f"SELECT * FROM read_json('s3://{manifest}')")
    # A step's log shows the first line of a file access error (it names requests and paths, not
    # values); any other error's message stays withheld.
    file_access_error = lakefs.file_access_error
    failures_wanted = 0
    with pytest.raises(duckdb.IOException) as missing:
        con.execute(f"SELECT * FROM read_csv('s3://{bucket}/landing/{RELEASE}/no-such-file.csv')")
    assert "no-such-file.csv" in file_access_error(missing.value)
    assert file_access_error(OSError("AWS Error ACCESS_DENIED\nmore")) == "AWS Error ACCESS_DENIED"
    assert file_access_error(ValueError("a value 1234")) is None


def test_duckdb_s3_reads_take_the_offset_when_called_whatever_other_threads_do(s3_lake):
    """DuckDB reads one file from several threads through one handle (seek, then read). A read
    waiting on S3 must not pick up a seek made by another thread meanwhile; a multi-buffer CSV read
    with several threads gives the file's bytes exactly."""
    import threading

    import duckdb

    from spark_jobs import lakefs

    client, bucket = s3_lake
    body = b"".join(f"{i};{i * 7919 % 100003}\n".encode() for i in range(600_000))  # ~7 MB: several buffers
    client.put_object(Bucket=bucket, Key="big.csv", Body=body)
    fs = lakefs.duckdb_s3_filesystem()
    handle = fs.open(f"{bucket}/big.csv", "rb")
    real_read_at, entered, resume = handle.stream.read_at, threading.Event(), threading.Event()

    def slow_first_read_at(nbytes, offset):
        if not entered.is_set():
            entered.set()
            resume.wait(10)
        return real_read_at(nbytes, offset)

    handle.stream = type("Stream", (), {"read_at": staticmethod(slow_first_read_at),
                                        "size": handle.stream.size, "seekable": lambda self: True})()
    first = {}
    reader = threading.Thread(target=lambda: (handle.seek(1000), first.setdefault("data", handle.read(50))))
    reader.start()
    assert entered.wait(10)
    handle.seek(5_000_000)  # another thread's seek while the first read waits on S3
    second = handle.read(50)
    resume.set()
    reader.join(10)
    assert first["data"] == body[1000:1050] and second == body[5_000_000:5_000_050]
    handle.seek(len(body) - 10)
    assert handle.read(100) == body[-10:] and handle.read(5) == b""

    con = duckdb.connect(config={"threads": 4})
    con.register_filesystem(lakefs.duckdb_s3_filesystem())
    for _ in range(3):
        assert con.execute(f"SELECT count(*), sum(column1) FROM read_csv('s3://{bucket}/big.csv', header=false)"
                           ).fetchone() == (600_000, sum(i * 7919 % 100003 for i in range(600_000)))


def test_release_dag_of_a_region_on_s3_runs_end_to_end(s3_env, synth_delivery, synth_truth, tmp_path):
    """fr-paris with its whole storage on S3 (landing, lake, vault under a KMS key) and the DuckDB
    engine: the release DAG waits for the delivery in the landing bucket, pseudonymises with the KMS
    pepper, writes every zone, report and the summary on S3 (nothing in the local lake), and the truth
    check matches. The job subprocesses get their AWS settings from the region's AWS connection."""
    from spark_jobs import lakefs

    from helpers import run_release_dag, write_test_region

    client, kms = s3_client(s3_env), s3_client(s3_env, "kms")
    buckets = {kind: new_bucket(client, f"fr-{kind}") for kind in ("landing", "lake", "vault", "code")}
    arn = kms.create_key(Description="fr-paris region key")["KeyMetadata"]["Arn"]
    _upload_tree(client, synth_delivery, buckets["landing"], f"deliveries/{RELEASE}")
    regions = write_test_region(tmp_path, name="fr-paris", overrides={
        "storage": {"buckets": {b: "eu-west-3" for b in buckets.values()},
                    "lake_root": f"s3://{buckets['lake']}/lake", "landing_root": f"s3://{buckets['landing']}/deliveries",
                    "code_root": f"s3://{buckets['code']}/jobs"},
        "pseudonymisation": {"vault_root": f"s3://{buckets['vault']}/vault",
                             "key_provider": {"type": "aws_kms", "key_arn": arn, "region_name": "eu-west-3",
                                              "create_if_missing": True}},
        "landing": {"quiet_seconds": 0},
    })
    connection = json.dumps({"conn_type": "aws", "login": "test", "password": "test",
                             "extra": {"endpoint_url": s3_env, "region_name": "eu-west-3"}})
    # The Airflow side reads the AWS connection only (no AWS variables), as a production worker does.
    env_without_aws = {k: "" for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    proc = run_release_dag(tmp_path, None, None, RELEASE, region="fr-paris", regions=regions,
                           extra_env={"AIRFLOW_CONN_AWS_FR_PARIS": connection, **env_without_aws})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    lake = f"s3://{buckets['lake']}/lake"
    summary_path = proc.stdout.strip().splitlines()[-1]
    assert summary_path.startswith(f"{lake}/runs/release={RELEASE}/") and summary_path.endswith("/summary.json")

    summary = lakefs.read_json(summary_path)
    assert summary["status"] == "success" and summary["region"] == "fr-paris" and summary["engine"] == "duckdb"
    assert summary["truth_check"]["status"] == "match", summary["truth_check"]
    assert summary["input"] == f"s3://{buckets['landing']}/deliveries/{RELEASE}"
    model_rows = {t: info["rows"] for t, info in summary["steps"]["model"]["tables"].items()}
    assert model_rows == synth_truth["events"]
    from spark_jobs.steprun import run_tag

    run = summary["run_id"]
    for zone in ("ingest", "quarantine", "clean/dcir", "clean/pmsi", "merge", "model", "truth"):
        name, _, part = zone.partition("/")
        location = lakefs.current(f"{lake}/{name}/release={RELEASE}" + (f"/run={run_tag(run)}" if name == "model" else "")
                                  + (f"/{part}" if part else ""))
        assert "/_v/manual__" in str(location), zone
        assert lakefs.list_files(location, ".parquet"), zone
    # Audited and published on S3: the pointer names the run, the catalog and the report are in the lake.
    for step in ("gate_clean", "gate_model", "feasibility_report", "publish"):
        assert summary["steps"][step]["status"] == "success", step
    # Every check read its tables through the zones' version pointers (only drift has nothing to compare).
    skipped = [c["name"] for g in ("gate_clean", "gate_model") for c in summary["steps"][g]["checks"]
               if c["status"] != "pass"]
    assert skipped == ["drift_from_previous_release"], skipped
    current = lakefs.read_json(f"{lake}/published/release={RELEASE}/CURRENT.json")
    assert current["run_id"] == run and current["model"].startswith(f"{lake}/model/release={RELEASE}/run=")
    assert lakefs.is_file(f"{lake}/catalog/fr-paris.duckdb") and lakefs.is_file(current["report"])
    assert not (tmp_path / "lake").exists() and not (tmp_path / "secure" / "vault").exists()
    # The vault's objects are sealed under the region's KMS key.
    vault_objects = client.list_objects_v2(Bucket=buckets["vault"]).get("Contents", [])
    assert vault_objects and all(client.head_object(Bucket=buckets["vault"], Key=o["Key"]).get("SSEKMSKeyId") == arn
                                 for o in vault_objects)
