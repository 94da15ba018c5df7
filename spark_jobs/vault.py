"""Pseudonyms and the encrypted raw-ID -> pseudonym vault (docs/pseudonymisation.md).

Pseudonym: argon2id over the raw identifier with the region's secret pepper as salt, fixed parameters
recorded in the vault, lower-case hex. The same raw value gives the same pseudonym in every table.

Vault: one file per version under `<vault root>/versions/`, and a `CURRENT` file naming the version
in use; ingest runs add `pending/<run>.delta` files in the same format. A version file is
    line 1: a JSON header (format, created_at, argon2 parameters, master key id, the version's data
            key wrapped by the region's key provider (keys.py), payload nonce),
    rest:   the mapping, compressed and encrypted with AES-256-GCM under the data key, the header
            bound to it as associated data (a changed header or payload byte fails authentication).
Saving writes the new version file completely, then switches CURRENT (locally an atomic rename, on
S3 a single PutObject of CURRENT after the new, immutable version object): a crash leaves the
previous version current and intact. Key rotation re-wraps the data key under a new master key
without re-hashing or re-encrypting the mapping.

The vault root is a local directory or an S3 prefix (`s3://bucket/prefix`); every read and write goes
through an object store (objectstore.py). An S3 vault uses its KMS key provider's store, so that every
object is written with SSE-KMS under the region's key, on top of the vault's own encryption.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

from spark_jobs.keys import KeyProviderError, local_key_for_cloud_vault
from spark_jobs.objectstore import normalise_root, open_store
from spark_jobs.uris import is_s3, is_within

VAULT_FORMAT = "snds-vault-1"
PLACEHOLDER_IDS = frozenset({"xxxxxxxxxxxxxxxxx", "XXXXXXXXXXXXXXXXD"})
_VERSION_RE = re.compile(r"^v[0-9]{6}$")
_VERSION_FILE_RE = re.compile(r"^(v[0-9]{6})\.vault$")


class VaultError(RuntimeError):
    """A vault that cannot be used; the message names the vault and the problem."""


@dataclass(frozen=True)
class Argon2Params:
    """argon2id parameters (defaults: OWASP's baseline, 19 MiB, 2 passes, 1 lane)."""

    time_cost: int = 2
    memory_cost_kib: int = 19 * 1024
    parallelism: int = 1
    hash_len: int = 32


def is_pseudonymisable(raw: str | None) -> bool:
    """Null, empty and placeholder identifiers (PMSI's unlinkable stays) are never hashed."""
    return bool(raw) and raw.strip() != "" and raw.strip() not in PLACEHOLDER_IDS


def pseudonym(raw: str, pepper: bytes, params: Argon2Params = Argon2Params()) -> str:
    from argon2.low_level import Type, hash_secret_raw

    if not is_pseudonymisable(raw):
        raise ValueError("null, empty or placeholder identifiers are not pseudonymised")
    return hash_secret_raw(
        secret=raw.encode("utf-8"), salt=pepper, time_cost=params.time_cost,
        memory_cost=params.memory_cost_kib, parallelism=params.parallelism, hash_len=params.hash_len,
        type=Type.ID,
    ).hex()


def pseudonym_batch(values, pepper: bytes, params: Argon2Params, workers: int = 1) -> list[str]:
    """Pseudonyms of a batch of identifiers, hashed on `workers` threads (argon2 releases the GIL)."""
    values = list(values)
    if workers <= 1 or len(values) < 2:
        return [pseudonym(v, pepper, params) for v in values]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda v: pseudonym(v, pepper, params), values, chunksize=64))


def _shown(root) -> str:
    root = normalise_root(root)
    return root if isinstance(root, str) else str(root.resolve())


def paths_overlap(a, b) -> bool:
    """One path or S3 prefix is the other or lies inside it (s3://b/lake and s3://b/lake/vault overlap;
    another bucket, or a local path against an S3 URI, does not). Local paths are compared resolved."""
    a, b = normalise_root(a), normalise_root(b)
    if is_s3(a) != is_s3(b):
        return False
    if not is_s3(a):
        a, b = a.resolve(), b.resolve()
    return is_within(str(a), str(b)) or is_within(str(b), str(a))


def check_separate(vault_root, lake_root) -> None:
    """The vault must live apart from the lake: neither inside the other."""
    if paths_overlap(vault_root, lake_root):
        raise VaultError(f"vault {_shown(vault_root)} and lake {_shown(lake_root)} overlap: "
                         "the vault must be stored apart from the lake")


def check_params(vault_root: Path, vault_params: Argon2Params | None, params: Argon2Params | None) -> None:
    """A vault's pseudonyms were made with its argon2 parameters: other ones would change them all."""
    if vault_params is not None and params is not None and vault_params != params:
        raise VaultError(f"vault {vault_root}: built with argon2 {asdict(vault_params)}, but the region is configured "
                         f"with {asdict(params)}: every pseudonym would change; fix the configuration")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Vault:
    """The region's raw-ID -> pseudonym mapping, encrypted, in versions.

    Layout under the vault root (apart from the lake):
        versions/v000001.vault ...   complete mappings, one per version
        CURRENT                      the version in use
        pending/<run>.delta          new mappings hashed by an ingest run, merged into a new version
                                     by the vault-update task (`commit_pending`)
    Version and delta files share one sealed format (header line + AES-256-GCM payload).

    `root` is a local directory (`self.root` is then a Path) or `s3://bucket/prefix` (a str). An S3
    vault reads and writes through the store of its KMS key provider (`keys.store`, same root: S3
    client of the region, SSE-KMS under the region's key) unless a `store` is given; a local key file
    is refused for it.
    """

    def __init__(self, root: str | Path, keys, *, store=None):
        root = normalise_root(root)
        self.root = root
        self.keys = keys
        self.store = store if store is not None else self._store_of(keys)

    def _store_of(self, keys):
        """The store this vault uses with `keys`: on S3, the key provider's own (same root)."""
        if not is_s3(self.root):
            return open_store(self.root)
        if getattr(keys, "kind", None) == "local_file":
            raise VaultError(local_key_for_cloud_vault(self.root))
        store = getattr(keys, "store", None)
        if store is None or getattr(store, "root", None) != self.root:
            raise VaultError(f"vault {self.root}: an S3 vault needs the S3 client and KMS key of its region: open "
                             "its key provider for this vault root (keys.open_key_provider(spec, vault_root))")
        return store

    def _uri(self, rel: str) -> str:
        return self.store.uri(rel)

    # --- sealed files ----------------------------------------------------------------------------
    def _seal(self, mapping: dict[str, str], params: Argon2Params, data_key: bytes | None = None,
              base_header: dict | None = None) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM


        data_key = data_key or AESGCM.generate_key(bit_length=256)
        payload_nonce = os.urandom(12)  # fresh for every encryption under a data key (GCM)
        try:
            wrapped = self.keys.wrap(data_key)
        except KeyProviderError as exc:
            raise VaultError(f"vault {self.root}: {exc}") from None
        header = dict(
            base_header or {},
            format=VAULT_FORMAT,
            created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            argon2=asdict(params),
            entries=len(mapping),
            key_id=wrapped["key_id"],
            wrapped_data_key=wrapped,
            payload_nonce=_b64(payload_nonce),
        )
        head = json.dumps(header, sort_keys=True).encode()
        if any("\n" in r for r in mapping):
            raise VaultError(f"vault {self.root}: an identifier contains a line break; it cannot be stored")
        plain = zlib.compress("".join(f"{r}\t{p}\n" for r, p in sorted(mapping.items())).encode("utf-8"))
        return head + b"\n" + AESGCM(data_key).encrypt(payload_nonce, plain, head)

    def _unseal(self, rel: str) -> tuple[dict[str, str], Argon2Params, bytes]:
        """Mapping, argon2 parameters and data key of a sealed file (`rel`: its name in the store);
        VaultError naming its path or URI otherwise."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        path = self._uri(rel)
        try:
            blob = self.store.read_bytes(rel)
        except OSError as exc:
            raise VaultError(f"vault {path}: unreadable ({exc.strerror})") from None
        head, sep, body = blob.partition(b"\n")
        try:
            header = json.loads(head)
            if not isinstance(header, dict) or header.get("format") != VAULT_FORMAT or not sep:
                raise ValueError("format")
            wrapped, nonce = header["wrapped_data_key"], base64.b64decode(header["payload_nonce"])
        except (ValueError, KeyError, TypeError):
            raise VaultError(f"vault {path}: not a vault file, or its header is damaged") from None
        try:
            data_key = self.keys.unwrap(wrapped)
        except KeyProviderError as exc:
            raise VaultError(f"vault {path}: its data key does not open: {exc}") from None
        try:
            plain = zlib.decompress(AESGCM(data_key).decrypt(nonce, body, head)).decode("utf-8")
        except InvalidTag:
            raise VaultError(f"vault {path}: the mapping fails authentication: the file is tampered or truncated") from None
        mapping = {}
        for line in plain.split("\n")[:-1] if plain else []:
            raw, _, pseudo = line.rpartition("\t")  # a pseudonym is hex: the last tab is the separator
            mapping[raw] = pseudo
        if len(mapping) != header["entries"]:
            raise VaultError(f"vault {path}: {len(mapping)} entries, header says {header['entries']}")
        return mapping, Argon2Params(**header["argon2"]), data_key

    # --- reading -------------------------------------------------------------------------------
    def _list(self, prefix: str) -> list[str]:
        try:
            return self.store.list(prefix)
        except OSError as exc:
            raise VaultError(f"vault {self._uri(prefix)}: cannot be listed ({exc.strerror})") from None

    def _versions(self) -> list[str]:
        return sorted(m.group(1) for m in map(_VERSION_FILE_RE.match, self._list("versions")) if m)

    def current_version(self) -> str | None:
        try:
            version = self.store.read_bytes("CURRENT").decode("utf-8", "replace").strip()
        except FileNotFoundError:
            if self._versions():
                raise VaultError(f"vault {self.root}: versions exist but CURRENT is missing") from None
            return None
        except OSError as exc:
            raise VaultError(f"vault {self._uri('CURRENT')}: unreadable ({exc.strerror})") from None
        try:
            stored = _VERSION_RE.match(version) and self.store.exists(self._version_rel(version))
        except OSError as exc:
            raise VaultError(f"vault {self._uri(self._version_rel(version))}: unreadable ({exc.strerror})") from None
        if not stored:
            raise VaultError(f"vault {self.root}: CURRENT names {version!r}, which is not a stored version")
        return version

    @staticmethod
    def _version_rel(version: str) -> str:
        return f"versions/{version}.vault"

    def _pending_rels(self) -> list[str]:
        return [f"pending/{name}" for name in self._list("pending") if name.endswith(".delta")]

    def pending_files(self) -> list[str]:
        """Paths or URIs of the pending deltas, in name order."""
        return [self._uri(rel) for rel in self._pending_rels()]

    def load(self, include_pending: bool = False) -> tuple[dict[str, str], Argon2Params | None]:
        """The current mapping raw -> pseudonym and its argon2 parameters ({} and None when empty).
        With `include_pending`, the deltas not yet merged are added (each checked like a version)."""
        version = self.current_version()
        mapping: dict[str, str] = {}
        params = None
        if version is not None:
            mapping, params, _ = self._unseal(self._version_rel(version))
        if include_pending:
            params = self._add_pending(mapping, params, self._pending_rels())
        return mapping, params

    def _add_pending(self, mapping: dict, params, pending: list[str]):
        """Adds the deltas of `pending` to `mapping` (each checked like a version); returns the params."""
        for rel in pending:
            delta, delta_params, _ = self._unseal(rel)
            params = self._merge(mapping, params, delta, delta_params, self._uri(rel))
        return params

    def _merge(self, mapping: dict, params, delta: dict, delta_params, source: str):
        if params is not None and delta_params != params:
            raise VaultError(f"vault {source}: argon2 parameters {delta_params} differ from the vault's {params}")
        for raw, pseudo in delta.items():
            if mapping.setdefault(raw, pseudo) != pseudo:
                raise VaultError(f"vault {source}: gives another pseudonym for an identifier already mapped "
                                 "(was it made with another pepper?)")
        return delta_params

    # --- writing -------------------------------------------------------------------------------
    def _next_version(self) -> str:
        versions = self._versions()
        return f"v{(int(versions[-1][1:]) + 1 if versions else 1):06d}"

    def _write_version(self, blob: bytes) -> str:
        """Write a complete new version under a new name (never over an existing one), then switch
        CURRENT to it (locally an atomic rename, on S3 one PutObject): a crash at any point leaves the
        previous version current and intact."""
        version = self._next_version()
        try:
            self.store.write_bytes(self._version_rel(version), blob, exclusive=True)
        except FileExistsError:
            raise VaultError(f"vault {self._uri(self._version_rel(version))}: already exists: is another vault "
                             "update running at the same time? Nothing was changed; run it again") from None
        self._switch(version)
        return version

    def _switch(self, version: str) -> None:
        self.store.write_bytes("CURRENT", (version + "\n").encode())

    def save(self, mapping: dict[str, str], params: Argon2Params) -> str:
        """Store `mapping` as a new version under a fresh data key; returns the version name."""
        return self._write_version(self._seal(mapping, params))

    def add_pending(self, name: str, delta: dict[str, str], params: Argon2Params) -> str | None:
        """Seal the new mappings of one run as `pending/<name>.delta` (nothing when there are none);
        returns its path or URI."""
        if not delta:
            return None
        if not re.match(r"^[A-Za-z0-9._-]+$", name) or name.startswith("."):
            raise ValueError(f"pending delta name {name!r}")
        rel = f"pending/{name}.delta"
        self.store.write_bytes(rel, self._seal(delta, params))
        return self._uri(rel)

    def commit_pending(self) -> dict:
        """Merge every pending delta into a new version, then delete the deltas. Returns counts."""
        pending = self._pending_rels()
        if not pending:
            return {"version": self.current_version(), "merged_deltas": 0, "new_entries": 0}
        mapping, params = self.load()
        before = len(mapping)
        params = self._add_pending(mapping, params, pending)
        version = self.save(mapping, params) if len(mapping) > before else self.current_version()
        for rel in pending:  # only once the new version is current
            self.store.delete(rel)
        return {"version": version, "merged_deltas": len(pending), "new_entries": len(mapping) - before,
                "entries": len(mapping)}

    def rotate(self, new_keys=None) -> str:
        """Re-wrap the current version's data key under the active master key of `new_keys` (or of the
        vault's own provider, after its rotation), without re-hashing: same data key, same mapping,
        a fresh payload nonce. Pending deltas are merged first. Returns the new version."""
        version = self.current_version()
        if version is None:
            raise VaultError(f"vault {self.root}: nothing to rotate")
        new_keys = new_keys or self.keys
        if new_keys.pepper() != self.keys.pepper():
            raise VaultError(f"vault {self.root}: the new keys have another pepper; pseudonyms would change")
        if self._pending_rels():
            self.commit_pending()
            version = self.current_version()
        mapping, params, data_key = self._unseal(self._version_rel(version))
        if new_keys is not self.keys and is_s3(self.root) and getattr(new_keys, "store", None) is not None \
                and new_keys.store.root == self.root:
            self.store = new_keys.store  # new objects under the new key's SSE-KMS too
        self.keys = new_keys
        return self._write_version(self._seal(mapping, params, data_key=data_key,
                                              base_header={"rotated_from": version}))

    def status(self) -> dict:
        """What the key-check task reports: no identifiers, no key material."""
        mapping, params = self.load()
        return {"vault": str(self.root), "version": self.current_version(), "entries": len(mapping),
                "pending_deltas": len(self.pending_files()), "argon2": asdict(params) if params else None,
                "key_id": self.keys.key_id()}
