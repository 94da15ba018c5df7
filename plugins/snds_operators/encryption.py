"""Operators for the encryption work of a region, so that the DAG shows it as tasks of its own.

- `KeyCheckOperator`: the region's key exists (created on the first run where the region allows it)
  and opens its vault; the vault lies apart from the lake; argon2 parameters match.
- `VaultUpdateOperator`: merges the pending deltas written by ingest into a new vault version.
- `KeyRotationOperator`: new master key, vault re-wrapped without re-hashing.

They run in the task process (cryptography and the key provider only: no engine) and return a status
without secrets or identifiers (key fingerprints and counts), which lands in XCom. KMS regions get
their KMS client from the amazon provider's hook, with the region's own AWS connection.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator

from snds_operators.regions import Region

try:  # Airflow 3.1+
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # pragma: no cover
    from airflow.exceptions import AirflowFailException


def region_key_settings(region: Region) -> dict:
    """The operator arguments describing a region's vault and keys (plain values: serialisable)."""
    return {"region_name": region.name, "vault_root": region.vault_root, "key_provider": dict(region.key_provider),
            "argon2": dict(region.argon2), "lake_root": region.lake_root}


class _RegionKeysOperator(BaseOperator):
    ui_color = "#f4d9ff"

    def __init__(self, *, region_name: str, vault_root: str, key_provider: dict, argon2: dict, lake_root: str,
                 **kwargs):
        super().__init__(**kwargs)
        self.region_name = region_name
        self.vault_root = vault_root
        self.key_provider = key_provider
        self.argon2 = argon2
        self.lake_root = lake_root

    def _keys(self):
        from spark_jobs.keys import open_key_provider

        spec = {k: v for k, v in self.key_provider.items() if k != "create_if_missing"}
        # vault_root stays a string: Path() would turn s3://bucket/prefix into s3:/bucket/prefix.
        return open_key_provider(spec, self.vault_root, in_airflow=True)

    def _run(self, fn, *args):
        from spark_jobs.keys import KeyProviderError
        from spark_jobs.vault import VaultError

        try:
            # The key provider is opened here, so that a refused one (e.g. a local key file for an S3
            # vault) fails the task instead of being retried.
            return fn(self._keys(), *args)
        except (KeyProviderError, VaultError) as exc:
            # A wrong or missing key or a damaged vault does not heal by retrying.
            raise AirflowFailException(f"region {self.region_name}: {exc}") from None


class KeyCheckOperator(_RegionKeysOperator):
    def execute(self, context: Any) -> dict:
        from spark_jobs.keyadmin import check_keys
        from spark_jobs.vault import Argon2Params

        params = Argon2Params(**self.argon2)
        return self._run(check_keys, self.vault_root, params, [self.lake_root],
                         bool(self.key_provider.get("create_if_missing", False)))


class VaultUpdateOperator(_RegionKeysOperator):
    def execute(self, context: Any) -> dict:
        from spark_jobs.keyadmin import update_vault

        return self._run(update_vault, self.vault_root)


class KeyRotationOperator(_RegionKeysOperator):
    def execute(self, context: Any) -> dict:
        from spark_jobs.keyadmin import rotate_keys

        return self._run(rotate_keys, self.vault_root)
