"""A production region's S3 side against a local S3 server (moto, started here; never the internet):
the release-arrival sensor on the landing bucket, and the code bundle upload with SSE-KMS."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

REGION = "eu-west-3"


@pytest.fixture
def fr_paris(s3_server, monkeypatch):
    """fr-paris in production, its AWS connection pointed at the local server, its buckets created and
    its KMS key created there (the region file's ARN swapped for the server's key)."""
    import boto3

    from snds_operators.regions import load_regions

    monkeypatch.setenv("AIRFLOW_CONN_AWS_FR_PARIS", json.dumps({
        "conn_type": "aws", "login": "test", "password": "test",
        "extra": {"endpoint_url": s3_server, "region_name": REGION}}))
    clients = {name: boto3.client(name, endpoint_url=s3_server, region_name=REGION, aws_access_key_id="test",
                                  aws_secret_access_key="test") for name in ("s3", "kms")}
    region = load_regions(deployment_name="production")["fr-paris"]
    for bucket in ("snds-fr-paris-landing", "snds-fr-paris-code", "snds-fr-paris-lake"):
        try:
            clients["s3"].create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        except clients["s3"].exceptions.BucketAlreadyOwnedByYou:
            pass
    key_arn = clients["kms"].create_key()["KeyMetadata"]["Arn"]
    region = dataclasses.replace(region, key_provider={**region.key_provider, "key_arn": key_arn})
    return region, clients["s3"]


def _upload_delivery(s3, delivery: Path, prefix: str, manifest: bool = True) -> None:
    for path in sorted(delivery.iterdir()):
        if path.is_file() and (manifest or path.name != "SHA256SUMS"):
            s3.put_object(Bucket="snds-fr-paris-landing", Key=f"{prefix}/{path.name}", Body=path.read_bytes())


def test_release_arrival_sensor_waits_for_a_complete_delivery_on_s3(fr_paris, synth_delivery):
    """The wait_for_delivery sensor of a scheduled run pokes the landing bucket through the region's
    AWS connection: not done while the manifest is missing, done once the delivery is complete."""
    from snds_operators.factory import build_release_dag
    from snds_operators.releases import resolve_release

    region, s3 = fr_paris
    region = dataclasses.replace(region, landing={**region.landing, "quiet_seconds": 0})
    sensor = build_release_dag(region).get_task("wait_for_delivery")
    run = resolve_release(region, {"release": "2026-03"})
    assert run["input"] == "s3://snds-fr-paris-landing/deliveries/2026-03" and run["from_landing"]
    paths = {**run, "run_id": "r"}

    _upload_delivery(s3, synth_delivery, "deliveries/2026-03", manifest=False)
    poke = sensor.python_callable(paths)
    assert poke.is_done is False and "no SHA256SUMS manifest yet" in poke.xcom_value["problems"]

    _upload_delivery(s3, synth_delivery, "deliveries/2026-03")
    poke = sensor.python_callable(paths)
    assert poke.is_done is True, poke.xcom_value["problems"]
    assert poke.xcom_value["status"] == "complete" and poke.xcom_value["location"].startswith("s3://snds-fr-paris-landing/")

    # A damaged file after the manifest: not complete again.
    s3.put_object(Bucket="snds-fr-paris-landing", Key="deliveries/2026-03/IR_BEN_R.csv", Body=b"damaged\n")
    poke = sensor.python_callable(paths)
    assert poke.is_done is False and "IR_BEN_R.csv: checksum mismatch" in poke.xcom_value["problems"]
    # A dry run reports the state once instead of waiting.
    assert sensor.python_callable({**paths, "dry_run": True}).is_done is True


def test_code_bundle_upload_to_the_region_code_bucket(fr_paris, tmp_path):
    """package_code's upload: the zip and the entry scripts under <code_root>/<version>/, SSE-KMS under
    the region's key; uploading the same version again writes nothing."""
    from snds_operators.factory import upload_bundle
    from spark_jobs.bundle import build

    region, s3 = fr_paris
    built = build(tmp_path)
    uris = upload_bundle(region, built)
    version = built["version"]
    assert uris["uri"] == f"s3://snds-fr-paris-code/jobs/{version}"
    assert uris["zip"] == f"s3://snds-fr-paris-code/jobs/{version}/snds_jobs.zip"
    assert uris["steps/ingest.py"] == f"s3://snds-fr-paris-code/jobs/{version}/steps/ingest.py"
    listed = s3.list_objects_v2(Bucket="snds-fr-paris-code", Prefix=f"jobs/{version}/")["Contents"]
    assert sorted(o["Key"].split(f"{version}/")[1] for o in listed) == [
        "snds_jobs.zip", "steps/clean.py", "steps/feasibility.py", "steps/ingest.py", "steps/merge.py", "steps/model.py",
        "steps/quality.py"]
    for obj in listed:
        head = s3.head_object(Bucket="snds-fr-paris-code", Key=obj["Key"])
        assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == region.key_provider["key_arn"]
    body = s3.get_object(Bucket="snds-fr-paris-code", Key=f"jobs/{version}/snds_jobs.zip")["Body"].read()
    assert body == Path(built["files"]["snds_jobs.zip"]).read_bytes()
    modified = {o["Key"]: o["LastModified"] for o in listed}
    assert upload_bundle(region, built) == uris
    again = s3.list_objects_v2(Bucket="snds-fr-paris-code", Prefix=f"jobs/{version}/")["Contents"]
    assert {o["Key"]: o["LastModified"] for o in again} == modified
