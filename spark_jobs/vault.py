"""Pseudonyms and the encrypted raw-ID -> pseudonym vault (issue #3, core; pipeline wiring to follow).

Pseudonym: argon2id over the raw identifier with the region's secret pepper as salt, fixed parameters
recorded in the vault, lower-case hex. The same raw value gives the same pseudonym in every table.

Vault: one file per version under `<vault root>/versions/`, and a `CURRENT` file naming the version
in use. A version file is
    line 1: a JSON header (format, created_at, argon2 parameters, master key id, the version's data
            key wrapped by the master key with AES-256-GCM, payload nonce),
    rest:   the mapping, compressed and encrypted with AES-256-GCM under the data key, the header
            bound to it as associated data (a changed header or payload byte fails authentication).
Saving writes the new version file completely, then switches CURRENT with an atomic rename: a crash
leaves the previous version current and intact. Key rotation re-wraps the data key under a new
master key without re-hashing or re-encrypting the mapping.
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

VAULT_FORMAT = "snds-vault-1"
PLACEHOLDER_IDS = frozenset({"xxxxxxxxxxxxxxxxx", "XXXXXXXXXXXXXXXXD"})
_VERSION_RE = re.compile(r"^v[0-9]{6}$")


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
    return bool(raw) and raw.strip() != "" and raw not in PLACEHOLDER_IDS


def pseudonym(raw: str, pepper: bytes, params: Argon2Params = Argon2Params()) -> str:
    from argon2.low_level import Type, hash_secret_raw

    if not is_pseudonymisable(raw):
        raise ValueError("null, empty or placeholder identifiers are not pseudonymised")
    return hash_secret_raw(
        secret=raw.encode("utf-8"), salt=pepper, time_cost=params.time_cost,
        memory_cost=params.memory_cost_kib, parallelism=params.parallelism, hash_len=params.hash_len,
        type=Type.ID,
    ).hex()


def check_separate(vault_root: Path, lake_root: Path) -> None:
    """The vault must live apart from the lake: neither inside the other."""
    v, lake = Path(vault_root).resolve(), Path(lake_root).resolve()
    if v == lake or lake in v.parents or v in lake.parents:
        raise VaultError(f"vault {v} and lake {lake} overlap: the vault must be stored apart from the lake")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _wrap_data_key(keys, data_key: bytes) -> dict:
    """The data key encrypted under the region's master key (a fresh nonce each time)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    return {"nonce": _b64(nonce), "ciphertext": _b64(AESGCM(keys.master_key()).encrypt(nonce, data_key, VAULT_FORMAT.encode()))}


class Vault:
    def __init__(self, root: str | Path, keys):
        self.root = Path(root)
        self.keys = keys

    # --- reading -------------------------------------------------------------------------------
    def current_version(self) -> str | None:
        pointer = self.root / "CURRENT"
        if not pointer.exists():
            return None
        version = pointer.read_text(encoding="utf-8").strip()
        if not _VERSION_RE.match(version) or not (self.root / "versions" / f"{version}.vault").exists():
            raise VaultError(f"vault {self.root}: CURRENT names {version!r}, which is not a stored version")
        return version

    def _read(self, version: str) -> tuple[dict, bytes, bytes]:
        path = self.root / "versions" / f"{version}.vault"
        blob = path.read_bytes()
        head, sep, body = blob.partition(b"\n")
        try:
            header = json.loads(head)
            if header.get("format") != VAULT_FORMAT or not sep:
                raise ValueError("format")
        except ValueError:
            raise VaultError(f"vault {path}: not a vault file, or its header is damaged") from None
        return header, head, body

    def _data_key(self, header: dict, path: Path, keys=None) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        keys = keys or self.keys
        wrapped = header["wrapped_data_key"]
        try:
            return AESGCM(keys.master_key()).decrypt(
                base64.b64decode(wrapped["nonce"]), base64.b64decode(wrapped["ciphertext"]), VAULT_FORMAT.encode()
            )
        except InvalidTag:
            raise VaultError(
                f"vault {path}: the master key {keys.key_id()} does not open this vault "
                f"(it was wrapped by {header.get('key_id')}): wrong key"
            ) from None

    def load(self) -> tuple[dict[str, str], Argon2Params | None]:
        """The current mapping raw -> pseudonym and its argon2 parameters ({} and None when empty)."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        version = self.current_version()
        if version is None:
            return {}, None
        path = self.root / "versions" / f"{version}.vault"
        header, head, body = self._read(version)
        data_key = self._data_key(header, path)
        try:
            plain = AESGCM(data_key).decrypt(base64.b64decode(header["payload_nonce"]), body, head)
        except InvalidTag:
            raise VaultError(f"vault {path}: the mapping fails authentication: the file is tampered or truncated") from None
        mapping = {}
        for line in zlib.decompress(plain).decode("utf-8").splitlines():
            raw, _, pseudo = line.partition("\t")
            mapping[raw] = pseudo
        if len(mapping) != header["entries"]:
            raise VaultError(f"vault {path}: {len(mapping)} entries, header says {header['entries']}")
        return mapping, Argon2Params(**header["argon2"])

    # --- writing -------------------------------------------------------------------------------
    def _next_version(self) -> str:
        versions = sorted(p.stem for p in (self.root / "versions").glob("v*.vault"))
        return f"v{(int(versions[-1][1:]) + 1 if versions else 1):06d}"

    def _write_version(self, header: dict, body_fn) -> str:
        """Write a complete new version file, then switch CURRENT to it (atomic rename)."""
        (self.root / "versions").mkdir(parents=True, exist_ok=True)
        version = self._next_version()
        head = json.dumps(header, sort_keys=True).encode()
        body = body_fn(head)
        final = self.root / "versions" / f"{version}.vault"
        tmp = final.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(head + b"\n" + body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        self._switch(version)
        return version

    def _switch(self, version: str) -> None:
        tmp = self.root / "CURRENT.tmp"
        tmp.write_text(version + "\n", encoding="utf-8")
        os.replace(tmp, self.root / "CURRENT")

    def save(self, mapping: dict[str, str], params: Argon2Params) -> str:
        """Store `mapping` as a new version under a fresh data key; returns the version name."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        data_key, payload_nonce = AESGCM.generate_key(bit_length=256), os.urandom(12)
        header = {
            "format": VAULT_FORMAT,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "argon2": asdict(params),
            "entries": len(mapping),
            "key_id": self.keys.key_id(),
            "wrapped_data_key": _wrap_data_key(self.keys, data_key),
            "payload_nonce": _b64(payload_nonce),
        }
        plain = zlib.compress("".join(f"{r}\t{p}\n" for r, p in sorted(mapping.items())).encode("utf-8"))
        return self._write_version(header, lambda head: AESGCM(data_key).encrypt(payload_nonce, plain, head))

    def rotate(self, new_keys) -> str:
        """Re-wrap the current data key under `new_keys`' master key, without re-hashing: the mapping is
        re-bound to the new header under the same data key. Returns the new version."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        version = self.current_version()
        if version is None:
            raise VaultError(f"vault {self.root}: nothing to rotate")
        if new_keys.pepper() != self.keys.pepper():
            raise VaultError(f"vault {self.root}: the new keys have another pepper; pseudonyms would change")
        path = self.root / "versions" / f"{version}.vault"
        header, head, body = self._read(version)
        data_key = self._data_key(header, path)
        plain = AESGCM(data_key).decrypt(base64.b64decode(header["payload_nonce"]), body, head)
        # A fresh nonce for the payload too: one (key, nonce) pair never encrypts twice in GCM.
        payload_nonce = os.urandom(12)
        new_header = dict(
            header,
            key_id=new_keys.key_id(),
            created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            wrapped_data_key=_wrap_data_key(new_keys, data_key),
            payload_nonce=_b64(payload_nonce),
        )
        new_version = self._write_version(new_header, lambda h: AESGCM(data_key).encrypt(payload_nonce, plain, h))
        self.keys = new_keys
        return new_version
