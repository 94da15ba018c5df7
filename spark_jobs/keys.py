"""Region key providers for pseudonymisation.

A key provider holds a region's two secrets and never lets the master key leave it:
- a master key that wraps (encrypts) the vault's data keys: envelope encryption, `wrap`/`unwrap`;
- the pepper, the secret argon2 salt that makes pseudonyms unguessable without it.

Providers:
- `LocalKeyFile` (embedded default): one JSON file with mode 0600, kept outside the lake, created on
  first use. It is a small key ring: rotation adds a new active master key and keeps the previous
  ones (marked retired) so that older vault versions stay readable; only the active key wraps.
- `KmsKeyProvider` (AWS regions): the master key is a KMS key; wrapping is KMS Encrypt/Decrypt with
  an encryption context, and the pepper is stored KMS-encrypted next to the vault (`pepper.kms`).
  The boto3 KMS client comes from the amazon provider's hook in Airflow tasks
  (`AwsBaseHook(client_type="kms")`) and from the job's own role on EMR. The vault root, and so
  `pepper.kms`, may be a local directory or an S3 prefix (`s3://bucket/prefix`, objects written with
  SSE-KMS under the region's key: objectstore.py); the provider holds that store (`.store`), which the
  vault uses too.

`open_key_provider(spec, vault_root)` builds either from a region's `pseudonymisation.key_provider`
settings. A local key file cannot guard an S3 vault (`local_key_for_cloud_vault`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import stat
from pathlib import Path

from spark_jobs.objectstore import normalise_root, open_store, write_private_file

KEY_FILE_VERSION = 2
WRAP_CONTEXT = {"purpose": "snds-vault-data-key"}
PEPPER_CONTEXT = {"purpose": "snds-pseudonym-pepper"}


class KeyProviderError(RuntimeError):
    """A key that cannot be used; the message names the key and the problem."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, payload: dict, exclusive: bool) -> None:
    write_private_file(path, json.dumps(payload, indent=1).encode("utf-8"), exclusive)


class LocalKeyFile:
    """The embedded default: a private key-ring file on this machine."""

    kind = "local_file"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._data: dict | None = None

    def describe(self) -> str:
        return f"key file {self.path}"

    @staticmethod
    def _new_key() -> dict:
        key = os.urandom(32)
        return {"key_id": "local:" + hashlib.sha256(b"snds-key-id" + key).hexdigest()[:16],
                "master_key": _b64(key), "created_at": _now(), "status": "active"}

    @classmethod
    def create(cls, path: str | Path, pepper: bytes | None = None) -> "LocalKeyFile":
        """Create a new key file (refuses to overwrite one): a random 32-byte master key, and a random
        32-byte pepper unless one is given."""
        payload = {"version": KEY_FILE_VERSION, "created_at": _now(),
                   "pepper": _b64(pepper if pepper is not None else os.urandom(32)), "keys": [cls._new_key()]}
        try:
            _write_json(Path(path), payload, exclusive=True)
        except FileExistsError:
            raise KeyProviderError(f"key file {path}: already exists, not overwritten") from None
        return cls(path)

    def provision(self, create_if_missing: bool) -> bool:
        """Make sure the key file exists and is usable; returns True when it was created now."""
        if not self.path.exists():
            if not create_if_missing:
                raise KeyProviderError(f"key file {self.path}: missing (and this region does not create keys)")
            LocalKeyFile.create(self.path)
            self._data = None
            self._load()
            return True
        self._load()
        return False

    def _load(self) -> dict:
        if self._data is None:
            if not self.path.exists():
                raise KeyProviderError(f"key file {self.path}: missing")
            mode = stat.S_IMODE(self.path.stat().st_mode)
            if mode & 0o077:
                raise KeyProviderError(f"key file {self.path}: readable by others (mode {mode:o}); chmod 600 it")
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if data.get("version") != KEY_FILE_VERSION:
                    raise ValueError("version")
                pepper = base64.b64decode(data["pepper"])
                keys = {k["key_id"]: (base64.b64decode(k["master_key"]), k["status"]) for k in data["keys"]}
            except (ValueError, KeyError, TypeError) as exc:
                raise KeyProviderError(f"key file {self.path}: unreadable ({type(exc).__name__})") from None
            active = [kid for kid, (_, status) in keys.items() if status == "active"]
            if len(pepper) < 16 or len(active) != 1 or any(len(k) != 32 for k, _ in keys.values()):
                raise KeyProviderError(
                    f"key file {self.path}: needs one active 32-byte master key and a pepper of 16+ bytes")
            self._data = {"raw": data, "pepper": pepper, "keys": keys, "active": active[0]}
        return self._data

    def pepper(self) -> bytes:
        return self._load()["pepper"]

    def key_id(self) -> str:
        """The active master key's fingerprint (named in vault headers; never the key itself)."""
        return self._load()["active"]

    def wrap(self, data_key: bytes) -> dict:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        d = self._load()
        nonce = os.urandom(12)  # fresh for every wrap
        ciphertext = AESGCM(d["keys"][d["active"]][0]).encrypt(nonce, data_key, b"snds-vault-1")
        return {"provider": self.kind, "key_id": d["active"], "nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}

    def unwrap(self, wrapped: dict) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        d = self._load()
        entry = d["keys"].get(wrapped.get("key_id"))
        if entry is None:
            raise KeyProviderError(
                f"key file {self.path}: does not hold master key {wrapped.get('key_id')} (holds "
                f"{', '.join(d['keys'])}): wrong key")
        try:
            return AESGCM(entry[0]).decrypt(base64.b64decode(wrapped["nonce"]),
                                            base64.b64decode(wrapped["ciphertext"]), b"snds-vault-1")
        except InvalidTag:
            raise KeyProviderError(f"key file {self.path}: master key {wrapped['key_id']} fails to unwrap: wrong key") from None
        except (ValueError, KeyError, TypeError):
            raise KeyProviderError(f"key file {self.path}: the wrapped data key is damaged") from None

    def rotate(self) -> str:
        """Add a new active master key; the previous one is kept as retired (it can still unwrap older
        vault versions, never wraps again). Returns the new key id. The file is replaced atomically."""
        d = self._load()
        raw = dict(d["raw"])
        new = self._new_key()
        raw["keys"] = [dict(k, status="retired") for k in raw["keys"]] + [new]
        _write_json(self.path, raw, exclusive=False)
        self._data = None
        return new["key_id"]


class KmsKeyProvider:
    """AWS KMS master key (a symmetric KMS key ARN of the region's own account and region).

    `pepper_path` is where `pepper.kms` lives: a local path, or an S3 URI next to an S3 vault. Its
    directory is the provider's `store` (objectstore.py); on S3 every object of that store is written
    with SSE-KMS under `key_arn`, through `s3_client` (default: from the environment, in the KMS
    client's region)."""

    kind = "aws_kms"

    def __init__(self, key_arn: str, pepper_path: str | Path, client, *, s3_client=None):
        self.key_arn = key_arn
        self.client = client
        self._pepper: bytes | None = None
        location = normalise_root(pepper_path)
        if isinstance(location, str):  # s3://bucket/prefix/pepper.kms
            root, _, self._pepper_name = location.rpartition("/")
            if root.endswith(":/"):
                raise KeyProviderError(
                    f"KMS pepper {location}: needs a bucket and a name (s3://bucket/prefix/pepper.kms)")
            if s3_client is None:
                from spark_jobs.objectstore import s3_client as make_s3_client

                s3_client = make_s3_client(getattr(getattr(client, "meta", None), "region_name", None))
            self.store = open_store(root, s3_client=s3_client, sse_kms_key_id=key_arn)
        else:
            self.store = open_store(location.parent)
            self._pepper_name = location.name
        self.pepper_path = self.store.uri(self._pepper_name)

    def describe(self) -> str:
        return f"KMS key {self.key_arn}"

    def _call(self, what: str, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise KeyProviderError(f"KMS key {self.key_arn}: {what} refused ({code})") from None
        except BotoCoreError as exc:
            raise KeyProviderError(f"KMS key {self.key_arn}: {what} failed ({type(exc).__name__})") from None

    def provision(self, create_if_missing: bool) -> bool:
        """Check the KMS key is usable and the KMS-encrypted pepper exists (created when allowed)."""
        meta = self._call("DescribeKey", self.client.describe_key, KeyId=self.key_arn)["KeyMetadata"]
        if meta.get("KeyState") != "Enabled":
            raise KeyProviderError(f"KMS key {self.key_arn}: state {meta.get('KeyState')}, not Enabled")
        existing = self._read_pepper_blob(missing_ok=True)
        if existing is not None:
            self._pepper = self._decrypt_pepper(existing)
            return False
        if not create_if_missing:
            raise KeyProviderError(f"KMS pepper {self.pepper_path}: missing (and this region does not create keys)")
        pepper = self._call("GenerateRandom", self.client.generate_random, NumberOfBytes=32)["Plaintext"]
        blob = self._call("Encrypt", self.client.encrypt, KeyId=self.key_arn, Plaintext=pepper,
                          EncryptionContext=PEPPER_CONTEXT)["CiphertextBlob"]
        payload = {"version": 1, "key_id": self.key_arn, "ciphertext": _b64(blob)}
        try:  # never overwrites one: an existing pepper made every pseudonym of the vault
            self.store.write_bytes(self._pepper_name, json.dumps(payload, indent=1).encode("utf-8"), exclusive=True)
        except FileExistsError:  # another task created it meanwhile: that one is the region's pepper
            self._pepper = None
            self.pepper()
            return False
        return True

    def _read_pepper_blob(self, missing_ok: bool = False) -> bytes | None:
        try:
            return self.store.read_bytes(self._pepper_name)
        except FileNotFoundError:
            if missing_ok:
                return None
            raise KeyProviderError(f"KMS pepper {self.pepper_path}: missing") from None
        except OSError as exc:
            raise KeyProviderError(f"KMS pepper {self.pepper_path}: unreadable ({exc.strerror})") from None

    def _decrypt_pepper(self, raw: bytes) -> bytes:
        try:
            blob = base64.b64decode(json.loads(raw.decode("utf-8"))["ciphertext"])
        except (ValueError, KeyError, TypeError):
            raise KeyProviderError(f"KMS pepper {self.pepper_path}: damaged") from None
        return self._call("Decrypt (pepper)", self.client.decrypt, CiphertextBlob=blob,
                          EncryptionContext=PEPPER_CONTEXT)["Plaintext"]

    def pepper(self) -> bytes:
        if self._pepper is None:
            self._pepper = self._decrypt_pepper(self._read_pepper_blob())
        return self._pepper

    def key_id(self) -> str:
        return self.key_arn

    def wrap(self, data_key: bytes) -> dict:
        blob = self._call("Encrypt", self.client.encrypt, KeyId=self.key_arn, Plaintext=data_key,
                          EncryptionContext=WRAP_CONTEXT)["CiphertextBlob"]
        return {"provider": self.kind, "key_id": self.key_arn, "ciphertext": _b64(blob)}

    def unwrap(self, wrapped: dict) -> bytes:
        if wrapped.get("provider") != self.kind:
            raise KeyProviderError(f"KMS key {self.key_arn}: the data key was wrapped by {wrapped.get('key_id')}: wrong key")
        try:
            blob = base64.b64decode(wrapped["ciphertext"])
            key_id = wrapped["key_id"]
        except (ValueError, KeyError, TypeError):
            raise KeyProviderError(f"KMS key {self.key_arn}: the wrapped data key is damaged") from None
        return self._call("Decrypt", self.client.decrypt, KeyId=key_id, CiphertextBlob=blob,
                          EncryptionContext=WRAP_CONTEXT)["Plaintext"]


def kms_client(region_name: str, aws_conn_id: str | None = None):
    """A KMS client: through the amazon provider's hook when an Airflow connection is named (Airflow
    tasks), else from the environment's credentials (EMR jobs run with their execution role)."""
    if aws_conn_id:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        return AwsBaseHook(aws_conn_id=aws_conn_id, client_type="kms", region_name=region_name).get_conn()
    import boto3

    return boto3.client("kms", region_name=region_name)


def local_key_for_cloud_vault(vault_root) -> str:
    """Why a local key file is refused for an S3 vault (the message of the errors that refuse it)."""
    return (f"vault {vault_root}: a local_file key provider cannot guard a vault on S3: a key file on the "
            "Airflow worker (or EMR node) for a cloud vault would break the region's key custody (the key "
            "would live outside the region's KMS, on whichever machine ran the task); use key_provider "
            "type aws_kms with the region's KMS key")


def open_key_provider(spec: dict, vault_root: str | Path, *, in_airflow: bool = False, s3_client=None):
    """The key provider a region's `pseudonymisation.key_provider` settings describe, for the vault at
    `vault_root` (a local directory or s3://bucket/prefix). In Airflow tasks (`in_airflow`) the KMS and
    S3 clients come from the amazon provider's hook with the spec's `aws_conn_id`; elsewhere from the
    environment (EMR: the job's role), in the spec's `region_name`. `s3_client` overrides the S3 one."""
    kind = spec.get("type")
    root = normalise_root(vault_root)
    if kind == "local_file":
        if isinstance(root, str):
            raise KeyProviderError(local_key_for_cloud_vault(root))
        return LocalKeyFile(spec["path"])
    if kind == "aws_kms":
        conn_id = spec.get("aws_conn_id") if in_airflow else None
        client = kms_client(spec["region_name"], conn_id)
        if isinstance(root, str):
            if s3_client is None:
                from spark_jobs.objectstore import s3_client as make_s3_client

                s3_client = make_s3_client(spec["region_name"], conn_id)
            return KmsKeyProvider(spec["key_arn"], f"{root}/pepper.kms", client, s3_client=s3_client)
        return KmsKeyProvider(spec["key_arn"], root / "pepper.kms", client)
    raise KeyProviderError(f"unknown key provider type {kind!r} (local_file or aws_kms)")
