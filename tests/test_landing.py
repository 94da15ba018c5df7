"""Landing watch (snds_operators.landing): a delivery is complete only with its manifest, matching
checksums, no file still being written and every required table; otherwise the reasons are reported.

Local directories, then the same checks on S3 served by a local moto server (boto3, and Airflow's
S3Hook as the landing-watch DAG gets its client).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snds_operators import landing
from snds_operators.landing import (
    MANIFEST,
    DeliveryCheck,
    check_delivery,
    parse_manifest,
    required_tables_from_config,
    scan_landing,
    write_manifest,
)

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = ["ER_PRS_F", "IR_BEN_R"]
BUCKET = "snds-landing"


def later() -> float:
    """A time at which every file copied or uploaded by the test is past the quiet period."""
    return time.time() + 3600


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """A small synthetic delivery, as the generator writes it (with its SHA256SUMS). Never modified."""
    from snds_synth import generate

    out = tmp_path_factory.mktemp("landing_src") / "d"
    generate(out, n=50, seed=11, years=(2019, 2019), quiet=True)
    return out


@pytest.fixture
def delivery(generated, tmp_path) -> Path:
    """A copy of the delivery in a local landing zone: <tmp>/landing/2024-06/."""
    dest = tmp_path / "landing" / "2024-06"
    shutil.copytree(generated, dest)
    return dest


def delivered_names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()
                  if p.is_file() and p.name != MANIFEST and not p.name.startswith(("_", ".")))


# --------------------------------------------------------------------------------------------- local
def test_required_tables_from_config(tmp_path):
    # none by default: DCIR-only, PMSI-only and referential-only extracts are valid deliveries
    assert required_tables_from_config(ROOT / "config" / "ingest.yaml") == []
    cfg = tmp_path / "ingest.yaml"
    cfg.write_text((ROOT / "config" / "ingest.yaml").read_text().replace(
        "tables:\n", "tables:\n  IR_BEN_R: {required: true}\n  ER_PRS_F: {required: true}\n", 1))
    assert required_tables_from_config(cfg) == ["IR_BEN_R", "ER_PRS_F"]


def test_generator_writes_the_manifest_last(generated):
    truth = json.loads((generated / "_truth" / "manifest.json").read_text())
    lines = (generated / MANIFEST).read_text().splitlines()
    assert [line.split("  ", 1)[1] for line in lines] == sorted(truth["files"]) == delivered_names(generated)
    for line in lines:
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((generated / name).read_bytes()).hexdigest() == digest
    newest = max(p.stat().st_mtime_ns for p in generated.rglob("*") if p.is_file() and p.name != MANIFEST)
    assert (generated / MANIFEST).stat().st_mtime_ns >= newest


def test_complete_delivery(delivery):
    c = check_delivery(str(delivery), required_tables=REQUIRED, now=later())
    assert isinstance(c, DeliveryCheck)
    assert (c.status, c.problems) == ("complete", [])
    assert c.release == "2024-06" and c.location == delivery.resolve().as_uri()
    assert c.files == delivered_names(delivery) and len(c.files) == 36
    assert c.bytes == sum((delivery / n).stat().st_size for n in c.files)
    assert c.manifest_sha256 == hashlib.sha256((delivery / MANIFEST).read_bytes()).hexdigest()
    d = json.loads(json.dumps(c.to_dict()))
    assert d["status"] == "complete" and d["files"] == c.files and d["manifest_sha256"] == c.manifest_sha256
    # the same through a file:// URI
    assert check_delivery(delivery.as_uri(), required_tables=REQUIRED, now=later()).to_dict() == c.to_dict()


def test_no_manifest(delivery):
    (delivery / MANIFEST).unlink()
    c = check_delivery(str(delivery), required_tables=REQUIRED, now=later())
    assert (c.status, c.problems, c.manifest_sha256) == ("incomplete", ["no SHA256SUMS manifest yet"], None)
    assert c.files == delivered_names(delivery)


def test_checksum_mismatch(delivery):
    path = delivery / "ER_PRS_F.csv"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one byte changed after the manifest, same size
    path.write_bytes(bytes(raw))
    c = check_delivery(str(delivery), required_tables=REQUIRED, now=later())
    assert (c.status, c.problems) == ("incomplete", ["ER_PRS_F.csv: checksum mismatch"])


def test_listed_but_missing(delivery):
    (delivery / "T_MCO19B.csv").unlink()
    c = check_delivery(str(delivery), required_tables=REQUIRED, now=later())
    assert c.problems == ["T_MCO19B.csv: listed in the manifest but missing"]
    assert "T_MCO19B.csv" not in c.files


def test_unlisted_files(delivery):
    shutil.copy(delivery / "T_MCO19B.csv", delivery / "T_MCO20B.csv")  # a real table, not in the manifest
    (delivery / "notes.txt").write_text("hello")
    (delivery / ".partial").write_text("x")  # hidden and _-prefixed entries are not part of a delivery
    (delivery / "_scratch").write_text("x")
    c = check_delivery(str(delivery), required_tables=REQUIRED, now=later())
    assert c.problems == ["T_MCO20B.csv: not listed in the manifest", "notes.txt: not listed in the manifest"]
    assert "T_MCO20B.csv" in c.files and ".partial" not in c.files


def test_file_still_being_written(delivery):
    now = later()
    path = delivery / "ER_PRS_F.csv"
    with open(path, "ab") as fh:  # still growing: its checksum cannot match yet, and is not even computed
        fh.write(b"partial line")
    os.utime(path, (now - 12, now - 12))
    c = check_delivery(str(delivery), required_tables=REQUIRED, now=now)
    assert c.status == "incomplete"
    assert c.problems == ["ER_PRS_F.csv: modified 12 s ago (< 300 s quiet period): still being written"]
    # without a quiet period only the checksum tells
    c = check_delivery(str(delivery), required_tables=REQUIRED, now=now, quiet_seconds=0)
    assert c.problems == ["ER_PRS_F.csv: checksum mismatch"]
    # at the real time, the copy just made is still settling (files, and the directory itself)
    c = check_delivery(str(delivery), required_tables=REQUIRED)
    assert c.status == "incomplete"
    assert "delivery directory: modified 0 s ago (< 300 s quiet period): files still arriving" in c.problems
    assert f"{MANIFEST}: modified 0 s ago (< 300 s quiet period): still being written" in c.problems


def test_missing_required_table(delivery):
    (delivery / "IR_BEN_R.csv").unlink()
    write_manifest(delivery)
    c = check_delivery(str(delivery), required_tables=REQUIRED, now=later())
    assert (c.status, c.problems) == ("incomplete", ["required table IR_BEN_R: no file"])
    # not required here: complete
    assert check_delivery(str(delivery), required_tables=["ER_PRS_F"], now=later()).status == "complete"
    with pytest.raises(ValueError, match="ER_NOPE_F"):
        check_delivery(str(delivery), required_tables=["ER_NOPE_F"], now=later())


def test_files_the_ingest_would_reject(delivery):
    shutil.copy(delivery / "ER_PRS_F.csv", delivery / "er_prs_f.CSV")
    (delivery / "ER_XYZ_F.csv").write_text("A;B\n")
    write_manifest(delivery)
    c = check_delivery(str(delivery), required_tables=REQUIRED, now=later())
    # native profile: an uncatalogued file is ingested as text, so it does not hold the delivery back
    assert c.problems == ["er_prs_f.CSV: table ER_PRS_F is also delivered in ER_PRS_F.csv"]


def test_uncatalogued_files_follow_the_profile(delivery, tmp_path):
    (delivery / "T_SSR19XYZ.csv").write_text("ETA_NUM;RHA_NUM\n1;2\n")
    (delivery / "IR_BEN_R_OLD.csv").write_text("A\n")
    write_manifest(delivery)
    assert check_delivery(str(delivery), required_tables=REQUIRED, now=later()).status == "complete"
    strict = tmp_path / "strict.yaml"
    strict.write_text("profile: strict\nuncatalogued: error\n")
    c = check_delivery(str(delivery), required_tables=REQUIRED, now=later(), profile=str(strict))
    assert c.problems == ["IR_BEN_R_OLD.csv: matches no catalogued table (profile strict: uncatalogued: error)",
                          "T_SSR19XYZ.csv: matches no catalogued table (profile strict: uncatalogued: error)"]
    assert check_delivery(str(delivery), required_tables=REQUIRED, now=later(), profile="auto").status == "complete"


def test_a_delivery_of_uncatalogued_files_only(tmp_path):
    d = tmp_path / "landing" / "2024-06"
    d.mkdir(parents=True)
    (d / "NOTES.csv").write_text("A\n1\n")
    write_manifest(d)
    c = check_delivery(str(d), required_tables=[], now=later())
    assert c.problems == ["no file of a catalogued SNDS table (expected e.g. ER_PRS_F.csv or T_MCO19B.csv)"]


def test_problems_never_hold_file_content(delivery):
    """A malformed manifest and a corrupted file: the report names files and lines, nothing read from them."""
    ben = (delivery / "IR_BEN_R.csv").read_text().splitlines()
    secret = ben[1].split(";")[0]
    (delivery / MANIFEST).write_text((delivery / MANIFEST).read_text() + f"{secret}  oops\n")
    (delivery / "IR_BEN_R.csv").write_text("\n".join(ben[:1] + ben[2:]) + "\n")
    c = check_delivery(str(delivery), required_tables=REQUIRED, now=later())
    assert c.problems == ["SHA256SUMS line 37: not `<sha256>  <file name>`", "IR_BEN_R.csv: checksum mismatch"]
    assert secret not in json.dumps(c.to_dict())


def test_parse_manifest_formats():
    h = "ab" * 32
    text = f"{h}  A.csv\n{h.upper()} *./B.csv\r\nSHA256 (C.csv) = {h}\n\n{h}  A.csv\nnot a line\n"
    entries, problems = parse_manifest(text)
    assert entries == {"A.csv": h, "B.csv": h, "C.csv": h}
    assert problems == ["A.csv: listed twice in the manifest", "SHA256SUMS line 6: not `<sha256>  <file name>`"]
    assert parse_manifest("") == ({}, ["SHA256SUMS lists no file"])


def test_scan_landing(delivery):
    root = delivery.parent
    shutil.copytree(delivery, root / "2024-07")
    (root / "2024-07" / MANIFEST).unlink()
    (root / "_staging").mkdir()  # not a release name
    (root / "not a release").mkdir()
    (root / "README.txt").write_text("a file at the root is no delivery")
    checks = scan_landing(str(root), required_tables=REQUIRED, now=later())
    assert [(c.release, c.status) for c in checks] == [("2024-06", "complete"), ("2024-07", "incomplete")]
    assert checks[1].problems == ["no SHA256SUMS manifest yet"]
    only = scan_landing(root.as_uri(), required_tables=REQUIRED, now=later(), release_pattern=r"^2024-07$")
    assert [c.release for c in only] == ["2024-07"]
    with pytest.raises(FileNotFoundError):
        scan_landing(str(root / "nope"), required_tables=REQUIRED)


def test_manifest_cli_verifies_with_sha256sum(generated, delivery):
    (delivery / MANIFEST).unlink()
    r = subprocess.run([sys.executable, "-m", "snds_operators.landing", "manifest", str(delivery)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(delivery / MANIFEST)
    assert (delivery / MANIFEST).read_bytes() == (generated / MANIFEST).read_bytes()  # deterministic
    assert not list(delivery.glob(".*"))  # no temporary file left
    ok = subprocess.run(["sha256sum", "--strict", "-c", MANIFEST], cwd=delivery, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count(": OK\n") == 36
    (delivery / "KI_CCI_R.csv").write_text("changed\n")
    assert subprocess.run(["sha256sum", "-c", MANIFEST], cwd=delivery, capture_output=True).returncode == 1


def test_check_cli(delivery):
    cmd = [sys.executable, "-m", "snds_operators.landing", "check", str(delivery), "--quiet-seconds", "0"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["status"] == "complete" and report["release"] == "2024-06" and len(report["files"]) == 36
    (delivery / "IR_BEN_R.csv").unlink()
    r = subprocess.run(cmd + ["--required-tables", "IR_BEN_R"], capture_output=True, text=True)
    assert r.returncode == 1
    assert json.loads(r.stdout)["problems"] == ["IR_BEN_R.csv: listed in the manifest but missing",
                                                "required table IR_BEN_R: no file"]


def test_import_is_cheap():
    code = ("import sys, snds_operators.landing; "
            "heavy = [m for m in ('pandas', 'pyspark', 'duckdb', 'boto3', 'airflow', 'numpy') "
            "if m in sys.modules]; "
            "print(heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------- S3
@pytest.fixture(scope="module")
def s3(s3_server):
    """The session's local S3 (moto server) with this module's bucket; yields (endpoint URL, boto3 client)."""
    from s3server import s3_client

    client = s3_client(s3_server)
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    return s3_server, client


def upload(client, src: Path, prefix: str, manifest: bool = True) -> str:
    """Upload the delivery files of `src` under `prefix` (the manifest last, unless not yet);
    returns the delivery's s3:// URI."""
    for name in delivered_names(src):
        client.upload_file(str(src / name), BUCKET, f"{prefix}/{name}")
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/_truth/manifest.json", Body=b"{}")  # sub-prefix: ignored
    if manifest:
        client.upload_file(str(src / MANIFEST), BUCKET, f"{prefix}/{MANIFEST}")
    return f"s3://{BUCKET}/{prefix}/"


def test_s3_complete(s3, generated, monkeypatch):
    _, client = s3
    uri = upload(client, generated, "complete/2024-06")
    monkeypatch.setattr(landing, "S3_PAGE_SIZE", 5)  # several list_objects_v2 pages
    c = check_delivery(uri, required_tables=REQUIRED, now=later(), s3_client=client)
    local = check_delivery(str(generated), required_tables=REQUIRED, now=later())
    assert (c.status, c.problems) == ("complete", [])
    assert (c.release, c.location) == ("2024-06", f"s3://{BUCKET}/complete/2024-06/")
    assert (c.files, c.bytes, c.manifest_sha256) == (local.files, local.bytes, local.manifest_sha256)
    # without the trailing slash too
    assert check_delivery(uri.rstrip("/"), required_tables=REQUIRED, now=later(), s3_client=client).status == "complete"
    # just uploaded: within the quiet period
    c = check_delivery(uri, required_tables=REQUIRED, s3_client=client)
    assert c.status == "incomplete" and len(c.problems) == 37 and all("still being written" in p for p in c.problems)


def test_s3_checksum_mismatch(s3, generated):
    _, client = s3
    uri = upload(client, generated, "mismatch/2024-06")
    raw = bytearray((generated / "ER_PRS_F.csv").read_bytes())
    raw[100] ^= 0x01
    client.put_object(Bucket=BUCKET, Key="mismatch/2024-06/ER_PRS_F.csv", Body=bytes(raw))
    c = check_delivery(uri, required_tables=REQUIRED, now=later(), s3_client=client)
    assert (c.status, c.problems) == ("incomplete", ["ER_PRS_F.csv: checksum mismatch"])


def test_s3_incomplete_without_manifest(s3, generated):
    _, client = s3
    uri = upload(client, generated, "partial/2024-06", manifest=False)
    c = check_delivery(uri, required_tables=REQUIRED, now=later(), s3_client=client)
    assert (c.status, c.problems, c.manifest_sha256) == ("incomplete", ["no SHA256SUMS manifest yet"], None)
    client.delete_object(Bucket=BUCKET, Key="partial/2024-06/T_MCO19B.csv")
    client.upload_file(str(generated / MANIFEST), BUCKET, f"partial/2024-06/{MANIFEST}")
    c = check_delivery(uri, required_tables=REQUIRED, now=later(), s3_client=client)
    assert c.problems == ["T_MCO19B.csv: listed in the manifest but missing"]
    empty = check_delivery(f"s3://{BUCKET}/partial/2099-01/", required_tables=REQUIRED, now=later(), s3_client=client)
    assert empty.problems == ["no file delivered yet", "no SHA256SUMS manifest yet",
                              "required table ER_PRS_F: no file", "required table IR_BEN_R: no file"]


def test_s3_scan_landing(s3, generated, monkeypatch):
    _, client = s3
    upload(client, generated, "zone/2024-06")
    upload(client, generated, "zone/2024-07", manifest=False)
    client.put_object(Bucket=BUCKET, Key="zone/_staging/x.csv", Body=b"x")
    client.put_object(Bucket=BUCKET, Key="zone/README.txt", Body=b"x")
    monkeypatch.setattr(landing, "S3_PAGE_SIZE", 1)
    checks = scan_landing(f"s3://{BUCKET}/zone", required_tables=REQUIRED, now=later(), s3_client=client)
    assert [(c.release, c.status, c.location) for c in checks] == [
        ("2024-06", "complete", f"s3://{BUCKET}/zone/2024-06/"),
        ("2024-07", "incomplete", f"s3://{BUCKET}/zone/2024-07/")]
    assert checks[1].problems == ["no SHA256SUMS manifest yet"]


def test_s3_through_airflow_s3hook(s3, generated, monkeypatch):
    endpoint, client = s3
    uri = upload(client, generated, "hook/2024-06")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_TEST", json.dumps({
        "conn_type": "aws", "login": "test", "password": "test",
        "extra": {"endpoint_url": endpoint, "region_name": "eu-west-3"}}))
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook_client = S3Hook(aws_conn_id="aws_test").get_conn()
    c = check_delivery(uri, required_tables=REQUIRED, now=later(), s3_client=hook_client)
    assert (c.status, c.problems) == ("complete", [])
    checks = scan_landing(f"s3://{BUCKET}/hook/", required_tables=REQUIRED, now=later(), s3_client=hook_client)
    assert [(c.release, c.status) for c in checks] == [("2024-06", "complete")]
