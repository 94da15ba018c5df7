"""The encryption tasks (key check, vault update, key rotation) and the KMS key provider (moto)."""

from __future__ import annotations

import json
import stat

import pytest

from helpers import FAST_ARGON2
from spark_jobs.keys import KeyProviderError, KmsKeyProvider, LocalKeyFile
from spark_jobs.vault import Vault, VaultError, pseudonym


def _settings(tmp_path, **kp):
    return {"region_name": "t", "vault_root": str(tmp_path / "secure" / "vault"),
            "key_provider": {"type": "local_file", "path": str(tmp_path / "secure" / "region.key"),
                             "create_if_missing": True, **kp},
            "argon2": {"time_cost": 1, "memory_cost_kib": 64, "parallelism": 1}, "lake_root": str(tmp_path / "lake")}


def _delta(keys, vault_root, raws, name):
    mapping = {r: pseudonym(r, keys.pepper(), FAST_ARGON2) for r in raws}
    Vault(vault_root, keys).add_pending(name, mapping, FAST_ARGON2)
    return mapping


def test_key_check_creates_then_checks_and_update_merges(tmp_path):
    from snds_operators.encryption import KeyCheckOperator, VaultUpdateOperator

    s = _settings(tmp_path)
    status = KeyCheckOperator(task_id="check_keys", **s).execute({})
    key_file = tmp_path / "secure" / "region.key"
    assert status["key_created"] is True and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert status["vault_version"] is None and status["entries"] == 0
    keys = LocalKeyFile(key_file)
    m1 = _delta(keys, tmp_path / "secure" / "vault", ["A" * 17, "B" * 17], "run1")
    m2 = _delta(keys, tmp_path / "secure" / "vault", ["B" * 17, "C" * 17], "run2")
    status = KeyCheckOperator(task_id="check_keys", **s).execute({})
    assert (status["key_created"], status["entries"], status["pending_deltas"]) == (False, 3, 2)
    result = VaultUpdateOperator(task_id="update_vault", **s).execute({})
    assert result == {"version": "v000001", "merged_deltas": 2, "new_entries": 3, "entries": 3}
    assert Vault(tmp_path / "secure" / "vault", keys).load() == ({**m1, **m2}, FAST_ARGON2)
    assert VaultUpdateOperator(task_id="update_vault", **s).execute({})["merged_deltas"] == 0
    assert "A" * 17 not in json.dumps(status) + json.dumps(result)  # XComs: counts and fingerprints only


def test_key_check_refuses_wrong_key_missing_key_and_other_argon2(tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    from snds_operators.encryption import KeyCheckOperator

    s = _settings(tmp_path)
    KeyCheckOperator(task_id="c", **s).execute({})
    _delta(LocalKeyFile(s["key_provider"]["path"]), s["vault_root"], ["A" * 17], "r")
    other = LocalKeyFile.create(tmp_path / "other.key")
    with pytest.raises(AirflowFailException, match=r"region t: vault .*r.delta: its data key does not open.*wrong key"):
        KeyCheckOperator(task_id="c", **{**s, "key_provider": {"type": "local_file", "path": str(other.path)}}).execute({})
    with pytest.raises(AirflowFailException, match="missing \\(and this region does not create keys\\)"):
        KeyCheckOperator(task_id="c", **_settings(tmp_path / "x", create_if_missing=False)).execute({})
    with pytest.raises(AirflowFailException, match="built with argon2 .* every pseudonym would change"):
        KeyCheckOperator(task_id="c", **{**s, "argon2": {"time_cost": 2, "memory_cost_kib": 64, "parallelism": 1}}).execute({})
    with pytest.raises(AirflowFailException, match="overlap"):
        KeyCheckOperator(task_id="c", **{**s, "lake_root": str(tmp_path / "secure")}).execute({})


def test_rotation_operator_rewraps_and_keeps_old_versions_readable(tmp_path):
    from snds_operators.encryption import KeyCheckOperator, KeyRotationOperator, VaultUpdateOperator

    s = _settings(tmp_path)
    KeyCheckOperator(task_id="c", **s).execute({})
    keys = LocalKeyFile(s["key_provider"]["path"])
    mapping = _delta(keys, s["vault_root"], ["A" * 17, "B" * 17], "r")
    VaultUpdateOperator(task_id="u", **s).execute({})
    old_id = keys.key_id()
    result = KeyRotationOperator(task_id="rotate_key", **s).execute({})
    assert result["old_key_id"] == old_id != result["new_key_id"] and result["vault_version"] == "v000002"
    fresh = LocalKeyFile(s["key_provider"]["path"])
    assert fresh.key_id() == result["new_key_id"] and fresh.pepper() == keys.pepper()  # same pseudonyms
    assert Vault(s["vault_root"], fresh).load()[0] == mapping
    header = json.loads((tmp_path / "secure" / "vault" / "versions" / "v000002.vault").read_bytes().split(b"\n")[0])
    assert header["key_id"] == result["new_key_id"] and header["rotated_from"] == "v000001"
    assert KeyCheckOperator(task_id="c", **s).execute({})["key_id"] == result["new_key_id"]


def test_rotation_crash_between_key_and_vault_leaves_a_readable_vault(tmp_path, monkeypatch):
    s = _settings(tmp_path)
    keys = LocalKeyFile.create(s["key_provider"]["path"])
    mapping = _delta(keys, s["vault_root"], ["A" * 17], "r")
    Vault(s["vault_root"], keys).commit_pending()
    old = keys.key_id()
    from spark_jobs import keyadmin

    monkeypatch.setattr(Vault, "rotate", lambda self, new_keys=None: (_ for _ in ()).throw(OSError("crash (simulated)")))
    with pytest.raises(OSError, match="simulated"):
        keyadmin.rotate_keys(keys, tmp_path / "secure" / "vault")
    monkeypatch.undo()
    fresh = LocalKeyFile(s["key_provider"]["path"])
    assert fresh.key_id() != old  # the new key is active, the old one retired but kept
    assert Vault(s["vault_root"], fresh).load()[0] == mapping
    keyadmin.rotate_keys(fresh, tmp_path / "secure" / "vault")  # finishing the rotation later works
    assert Vault(s["vault_root"], LocalKeyFile(s["key_provider"]["path"])).load()[0] == mapping


@pytest.fixture
def kms():
    from moto import mock_aws

    with mock_aws():
        import boto3

        client = boto3.client("kms", region_name="eu-west-3")
        arn = client.create_key(Description="snds test")["KeyMetadata"]["Arn"]
        yield client, arn


def test_kms_provider_vault_roundtrip_rotation_and_wrong_key(tmp_path, monkeypatch, kms):
    client, arn = kms
    keys = KmsKeyProvider(arn, tmp_path / "vault" / "pepper.kms", client)
    with pytest.raises(KeyProviderError, match="pepper .* missing"):
        keys.provision(create_if_missing=False)
    assert keys.provision(create_if_missing=True) is True and len(keys.pepper()) == 32
    assert stat.S_IMODE((tmp_path / "vault" / "pepper.kms").stat().st_mode) == 0o600
    assert KmsKeyProvider(arn, tmp_path / "vault" / "pepper.kms", client).pepper() == keys.pepper()
    vault = Vault(tmp_path / "vault", keys)
    mapping = {"A" * 17: pseudonym("A" * 17, keys.pepper(), FAST_ARGON2)}
    vault.save(mapping, FAST_ARGON2)
    header = json.loads((tmp_path / "vault" / "versions" / "v000001.vault").read_bytes().split(b"\n")[0])
    assert header["wrapped_data_key"]["provider"] == "aws_kms" and header["key_id"] == arn
    assert Vault(tmp_path / "vault", keys).load() == (mapping, FAST_ARGON2)
    # Rotation to a new KMS key: re-wrapped under it, pepper kept (it stays wrapped by the old key,
    # which KMS still decrypts), mapping unchanged.
    new_arn = client.create_key(Description="snds test 2")["KeyMetadata"]["Arn"]
    new_keys = KmsKeyProvider(new_arn, tmp_path / "vault" / "pepper.kms", client)
    assert vault.rotate(new_keys) == "v000002"
    assert Vault(tmp_path / "vault", new_keys).load()[0] == mapping
    # A disabled key is refused with a clear error naming it.
    client.disable_key(KeyId=new_arn.split("/")[-1])
    with pytest.raises(KeyProviderError, match="state Disabled"):
        new_keys.provision(create_if_missing=False)
    # A KMS client of another region (another account's key, a key without permission...) is refused.
    import boto3

    elsewhere = KmsKeyProvider(new_arn, tmp_path / "vault" / "pepper.kms", boto3.client("kms", region_name="us-east-1"))
    with pytest.raises(VaultError, match=f"v000002.vault: its data key does not open: KMS key {new_arn}: Decrypt refused"):
        Vault(tmp_path / "vault", elsewhere).load()
    # A local key cannot open a KMS-wrapped vault.
    with pytest.raises(VaultError, match="wrong key"):
        Vault(tmp_path / "vault", LocalKeyFile.create(tmp_path / "l.key")).load()


def test_kms_key_check_through_the_amazon_hook(tmp_path, monkeypatch, kms):
    """In Airflow the KMS client comes from AwsBaseHook with the region's connection."""
    from snds_operators.encryption import KeyCheckOperator

    _, arn = kms
    monkeypatch.setenv("AIRFLOW_CONN_AWS_EU_WEST_3", json.dumps({"conn_type": "aws", "extra": {"region_name": "eu-west-3"}}))
    s = _settings(tmp_path)
    s["key_provider"] = {"type": "aws_kms", "key_arn": arn, "region_name": "eu-west-3", "aws_conn_id": "aws_eu_west_3",
                         "create_if_missing": True}
    status = KeyCheckOperator(task_id="check_keys", **s).execute({})
    assert status["key_created"] is True and status["key_id"] == arn
    assert (tmp_path / "secure" / "vault" / "pepper.kms").exists()
