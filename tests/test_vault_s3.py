"""The vault on S3 (s3://bucket/prefix), against a local S3 + KMS server (moto's server mode, 127.0.0.1):
round trip, SSE-KMS under the region's key on every object, pending deltas, rotation, a crash before
CURRENT moves, tampering, no raw identifier in any object, local key files refused, and the Airflow
tasks with the region's AWS connection."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import pytest

from helpers import FAST_ARGON2, damage_sealed
from spark_jobs.keys import KeyProviderError, KmsKeyProvider, LocalKeyFile, open_key_provider
from spark_jobs.objectstore import normalise_root, open_store
from spark_jobs.uris import is_s3, split_s3
from spark_jobs.vault import Vault, VaultError, check_separate, paths_overlap, pseudonym

REGION = "eu-west-3"
BUCKET = "snds-vault-eu"
RAW = ["A1234567890123456", "B1234567890123456", "C1234567890123456"]


@pytest.fixture(scope="module")
def aws(s3_server):
    """The session's local S3 + KMS server, with this module's bucket and a region key."""
    from s3server import s3_client

    def client(service):
        return s3_client(s3_server, service, REGION)

    kms, s3 = client("kms"), client("s3")
    arn = kms.create_key(Description="snds region key")["KeyMetadata"]["Arn"]
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return SimpleNamespace(endpoint=s3_server, client=client, kms=kms, s3=s3, arn=arn)


@pytest.fixture
def root():
    """A fresh vault prefix per test, in the shared bucket."""
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}/vault"


def _keys(aws, root, arn=None) -> KmsKeyProvider:
    keys = KmsKeyProvider(arn or aws.arn, f"{root}/pepper.kms", aws.kms, s3_client=aws.s3)
    keys.provision(create_if_missing=True)
    return keys


def _mapping(keys, raws=RAW):
    return {r: pseudonym(r, keys.pepper(), FAST_ARGON2) for r in raws}


def _objects(aws, root) -> dict[str, dict]:
    """key (relative to the vault root) -> head_object of every object under the vault prefix."""
    _, prefix = split_s3(root)
    keys = [o["Key"] for page in aws.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/")
            for o in page.get("Contents", [])]
    return {k[len(prefix) + 1:]: aws.s3.head_object(Bucket=BUCKET, Key=k) for k in keys}


def _get(aws, root, rel) -> bytes:
    return aws.s3.get_object(Bucket=BUCKET, Key=f"{split_s3(root)[1]}/{rel}")["Body"].read()


def _put(aws, root, rel, data: bytes) -> None:
    aws.s3.put_object(Bucket=BUCKET, Key=f"{split_s3(root)[1]}/{rel}", Body=data,
                      ServerSideEncryption="aws:kms", SSEKMSKeyId=aws.arn)


def test_s3_vault_roundtrip_pending_commit_sse_kms_and_no_raw_ids(aws, root):
    keys = _keys(aws, root)
    vault = Vault(root, keys)
    assert vault.root == root and vault.store is keys.store and vault.load() == ({}, None)
    m1 = _mapping(keys, RAW[:2])
    assert vault.save(m1, FAST_ARGON2) == "v000001"
    again = Vault(root, _keys(aws, root))  # a fresh provider reads the same pepper from S3
    assert again.keys.pepper() == keys.pepper() and again.load() == (m1, FAST_ARGON2)
    # A pending delta, visible with include_pending, merged by commit_pending and then deleted.
    m2 = _mapping(keys, RAW[1:])
    delta = vault.add_pending("run-1", {RAW[2]: m2[RAW[2]]}, FAST_ARGON2)
    assert delta == f"{root}/pending/run-1.delta" and vault.pending_files() == [delta]
    assert vault.load() == (m1, FAST_ARGON2)
    assert vault.load(include_pending=True)[0] == {**m1, **m2}
    objects = _objects(aws, root)
    assert sorted(objects) == ["CURRENT", "pending/run-1.delta", "pepper.kms", "versions/v000001.vault"]
    for name, head in objects.items():  # every object: SSE-KMS under the region's key
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", aws.arn), name
    for name in objects:  # and no raw identifier in any object's bytes
        blob = _get(aws, root, name)
        assert not any(r.encode() in blob or r[:9].encode() in blob for r in RAW), name
    assert vault.commit_pending() == {"version": "v000002", "merged_deltas": 1, "new_entries": 1, "entries": 3}
    assert vault.pending_files() == [] and Vault(root, keys).load() == ({**m1, **m2}, FAST_ARGON2)
    assert _get(aws, root, "CURRENT") == b"v000002\n"
    objects = _objects(aws, root)
    assert sorted(objects) == ["CURRENT", "pepper.kms", "versions/v000001.vault", "versions/v000002.vault"]
    assert all((h["ServerSideEncryption"], h["SSEKMSKeyId"]) == ("aws:kms", aws.arn) for h in objects.values())
    assert vault.status() == {"vault": root, "version": "v000002", "entries": 3, "pending_deltas": 0,
                              "argon2": {"time_cost": 1, "memory_cost_kib": 64, "parallelism": 1, "hash_len": 32},
                              "key_id": aws.arn}


def test_s3_rotation_to_a_new_kms_key(aws, root):
    keys = _keys(aws, root)
    vault = Vault(root, keys)
    mapping = _mapping(keys)
    vault.save(mapping, FAST_ARGON2)
    vault.add_pending("run-1", {"D1234567890123456": "dd" * 32}, FAST_ARGON2)
    new_arn = aws.kms.create_key(Description="snds region key 2")["KeyMetadata"]["Arn"]
    new_keys = KmsKeyProvider(new_arn, f"{root}/pepper.kms", aws.kms, s3_client=aws.s3)
    assert vault.rotate(new_keys) == "v000003"  # the delta merged first (v000002), then re-wrapped
    header = json.loads(_get(aws, root, "versions/v000003.vault").split(b"\n")[0])
    assert header["key_id"] == new_arn and header["rotated_from"] == "v000002"
    assert Vault(root, new_keys).load()[0] == {**mapping, "D1234567890123456": "dd" * 32}
    heads = _objects(aws, root)
    assert heads["versions/v000003.vault"]["SSEKMSKeyId"] == new_arn  # new objects: the new key
    assert heads["CURRENT"]["SSEKMSKeyId"] == new_arn
    assert heads["pepper.kms"]["SSEKMSKeyId"] == aws.arn  # the pepper is kept as it was
    # A KMS client that may not use the key (here: another region's) is refused; the error names the object.
    import boto3

    elsewhere = KmsKeyProvider(new_arn, f"{root}/pepper.kms", boto3.client(
        "kms", endpoint_url=aws.endpoint, region_name="us-east-1", aws_access_key_id="test",
        aws_secret_access_key="test"), s3_client=aws.s3)
    with pytest.raises(VaultError, match=rf"vault {root}/versions/v000003.vault: its data key does not open: "
                                         rf"KMS key {new_arn}: Decrypt refused"):
        Vault(root, elsewhere).load()


def test_s3_crash_before_current_moves_keeps_previous_version(aws, root, monkeypatch):
    keys = _keys(aws, root)
    vault = Vault(root, keys)
    m1 = _mapping(keys, RAW[:1])
    vault.save(m1, FAST_ARGON2)
    write = vault.store.write_bytes

    def crash_on_current(rel, data, **kwargs):
        if rel == "CURRENT":
            raise OSError("power cut (simulated)")
        return write(rel, data, **kwargs)

    monkeypatch.setattr(vault.store, "write_bytes", crash_on_current)
    with pytest.raises(OSError, match="simulated"):
        vault.save(_mapping(keys), FAST_ARGON2)
    monkeypatch.undo()
    assert "versions/v000002.vault" in _objects(aws, root)  # the new version was written...
    fresh = Vault(root, keys)
    assert fresh.current_version() == "v000001" and fresh.load() == (m1, FAST_ARGON2)  # ...but is not current
    assert fresh.save(_mapping(keys), FAST_ARGON2) == "v000003"  # the orphan is never overwritten
    # A version object is written only if none has its name (conditional PUT): two updates at once
    # cannot overwrite each other's version.
    monkeypatch.setattr(fresh, "_next_version", lambda: "v000001")
    with pytest.raises(VaultError, match=rf"{root}/versions/v000001.vault: already exists"):
        fresh.save({}, FAST_ARGON2)
    monkeypatch.undo()
    assert Vault(root, keys).load()[0] == _mapping(keys)


@pytest.mark.parametrize("damage", ["flip_payload", "flip_header", "truncate", "garbage"])
def test_s3_tampered_object_is_refused_naming_it(aws, root, damage):
    keys = _keys(aws, root)
    Vault(root, keys).save(_mapping(keys, RAW[:1]), FAST_ARGON2)
    _put(aws, root, "versions/v000001.vault", damage_sealed(_get(aws, root, "versions/v000001.vault"), damage))
    expected = ("not a vault file" if damage == "garbage"
                else "the mapping fails authentication: the file is tampered or truncated")
    with pytest.raises(VaultError, match=rf"^vault {root}/versions/v000001.vault: {expected}"):
        Vault(root, keys).load()


def test_s3_errors_name_the_object(aws, root):
    keys = _keys(aws, root)
    vault = Vault(root, keys)
    vault.save(_mapping(keys, RAW[:1]), FAST_ARGON2)
    _put(aws, root, "CURRENT", b"v000009\n")
    with pytest.raises(VaultError, match=rf"vault {root}: CURRENT names 'v000009', which is not a stored version"):
        vault.load()
    aws.s3.delete_object(Bucket=BUCKET, Key=split_s3(root)[1] + "/CURRENT")
    with pytest.raises(VaultError, match="versions exist but CURRENT is missing"):
        vault.load()
    # A bucket that does not exist: the error names the object and the S3 error code.
    missing = KmsKeyProvider(aws.arn, "s3://no-such-bucket/vault/pepper.kms", aws.kms, s3_client=aws.s3)
    with pytest.raises(VaultError, match=r"vault s3://no-such-bucket/vault/CURRENT: "
                                         r"unreadable \(S3 GetObject failed \(NoSuchBucket\)\)"):
        Vault("s3://no-such-bucket/vault", missing).load()
    with pytest.raises(KeyProviderError, match=r"KMS pepper s3://no-such-bucket/vault/pepper.kms: unreadable"):
        missing.pepper()
    other = f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}/vault"
    with pytest.raises(KeyProviderError,
                       match=rf"KMS pepper {other}/pepper.kms: missing \(and this region does not create keys\)"):
        KmsKeyProvider(aws.arn, f"{other}/pepper.kms", aws.kms, s3_client=aws.s3).provision(create_if_missing=False)
    # A provider opened for another vault root does not lend its store to this one.
    with pytest.raises(VaultError, match="open its key provider for this vault root"):
        Vault(other, keys)


def test_local_key_file_refused_for_an_s3_vault(aws, root, tmp_path):
    spec = {"type": "local_file", "path": str(tmp_path / "region.key")}
    with pytest.raises(KeyProviderError, match=rf"vault {root}: a local_file key provider cannot guard a vault on S3: "
                                               r"a key file on the Airflow worker .* key custody"):
        open_key_provider(spec, root)
    with pytest.raises(VaultError, match="key custody"):
        Vault(root, LocalKeyFile.create(tmp_path / "region.key"))
    assert _objects(aws, root) == {}  # nothing written


def test_key_provider_from_spec_outside_airflow_uses_the_environment(aws, root, monkeypatch):
    """EMR jobs: KMS and S3 clients from the environment (here pointed at the local server), region
    from the spec."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    keys = open_key_provider({"type": "aws_kms", "key_arn": aws.arn, "region_name": REGION}, root)
    assert keys.store.root == root and keys.store.client.meta.region_name == REGION
    assert keys.provision(create_if_missing=True) is True
    Vault(root, keys).save(_mapping(keys, RAW[:1]), FAST_ARGON2)
    assert {h["SSEKMSKeyId"] for h in _objects(aws, root).values()} == {aws.arn}


def test_airflow_tasks_with_the_regions_aws_connection(aws, root, tmp_path, monkeypatch):
    """In Airflow the KMS and S3 clients come from AwsBaseHook with the region's connection (endpoint,
    credentials and region from the connection)."""
    from snds_operators.encryption import KeyCheckOperator, KeyRotationOperator, VaultUpdateOperator

    monkeypatch.setenv("AIRFLOW_CONN_AWS_EU", json.dumps({
        "conn_type": "aws", "login": "test", "password": "test",
        "extra": {"endpoint_url": aws.endpoint, "region_name": REGION}}))
    spec = {"type": "aws_kms", "key_arn": aws.arn, "region_name": REGION, "aws_conn_id": "aws_eu"}
    s = {"region_name": "eu", "vault_root": root, "key_provider": {**spec, "create_if_missing": True},
         "argon2": {"time_cost": 1, "memory_cost_kib": 64, "parallelism": 1}, "lake_root": str(tmp_path / "lake")}
    status = KeyCheckOperator(task_id="check_keys", **s).execute({})
    assert status["key_created"] is True and status["key_id"] == aws.arn and status["vault_version"] is None
    keys = open_key_provider(spec, root, in_airflow=True)
    assert keys.store.root == root
    mapping = _mapping(keys)
    Vault(root, keys).add_pending("run-1", mapping, FAST_ARGON2)
    status = KeyCheckOperator(task_id="check_keys", **s).execute({})
    assert (status["key_created"], status["entries"], status["pending_deltas"]) == (False, 3, 1)
    result = VaultUpdateOperator(task_id="update_vault", **s).execute({})
    assert (result["version"], result["merged_deltas"], result["new_entries"]) == ("v000001", 1, 3)
    result = KeyRotationOperator(task_id="rotate_key", **s).execute({})
    assert (result["old_key_id"], result["new_key_id"], result["vault_version"]) == (aws.arn, aws.arn, "v000002")
    assert Vault(root, open_key_provider(spec, root, in_airflow=True)).load() == (mapping, FAST_ARGON2)
    objects = _objects(aws, root)
    assert sorted(objects) == ["CURRENT", "pepper.kms", "versions/v000001.vault", "versions/v000002.vault"]
    assert all((h["ServerSideEncryption"], h["SSEKMSKeyId"]) == ("aws:kms", aws.arn) for h in objects.values())
    # The vault must still lie apart from an S3 lake.
    bad = dict(s, lake_root=root.rsplit("/", 1)[0])
    with pytest.raises(Exception, match="overlap"):
        KeyCheckOperator(task_id="check_keys", **bad).execute({})


def test_s3_uris_overlap_and_store_listing(aws, root, monkeypatch):
    for a, b in (("s3://b/lake", "s3://b/lake/vault"), ("s3://b/lake/", "s3://b/lake"), ("s3://b", "s3://b/x"),
                 ("s3a://b/lake", "s3://b/lake/vault")):
        assert paths_overlap(a, b) and paths_overlap(b, a), (a, b)
    for a, b in (("s3://b/lake", "s3://c/lake"), ("s3://b/lake", "s3://b/lakehouse"), ("s3://b/lake", "/b/lake"),
                 ("s3://b/lake", "s3://b/vault")):
        assert not paths_overlap(a, b) and not paths_overlap(b, a), (a, b)
    check_separate("s3://b/vault", "s3://b/lake")
    with pytest.raises(VaultError, match=r"vault s3://b/lake/vault and lake s3://b/lake overlap"):
        check_separate("s3://b/lake/vault", "s3://b/lake/")
    assert is_s3("s3://b/x") and not is_s3("/s3/x") and normalise_root("s3://b//x/") == "s3://b/x"
    with pytest.raises(ValueError, match="only local paths"):
        normalise_root("gs://b/x")
    # Listing pages through every object, names relative to the "directory", sorted.
    store = open_store(root, s3_client=aws.s3, sse_kms_key_id=aws.arn)
    for name in ("c", "a", "b", "sub/d"):
        store.write_bytes(f"dir/{name}", b"x")
    real = aws.s3.list_objects_v2
    monkeypatch.setattr(store.client, "list_objects_v2", lambda **kw: real(MaxKeys=1, **kw))
    assert store.list("dir") == ["a", "b", "c"] and store.list("none") == []
    assert store.exists("dir/a") and not store.exists("dir/z")
    store.delete("dir/a")
    assert store.list("dir") == ["b", "c"]
    with pytest.raises(FileNotFoundError, match="no such object"):
        store.read_bytes("dir/a")
    with pytest.raises(FileExistsError):
        store.write_bytes("dir/b", b"y", exclusive=True)
