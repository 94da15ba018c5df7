"""Region key providers for pseudonymisation (issue #3).

A key provider holds a region's two secrets:
- the master key (AES-256) that wraps the vault's data keys (envelope encryption),
- the pepper, the secret argon2 salt that makes pseudonyms unguessable without it.

`LocalKeyFile` is the embedded default: one JSON file, created on first use with mode 0600, kept
outside the lake. (AWS KMS for production regions comes with the pipeline wiring of #3.)
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import stat
from pathlib import Path

KEY_FILE_VERSION = 1


class KeyProviderError(RuntimeError):
    """A key that cannot be used; the message names the key file and the problem."""


class LocalKeyFile:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._data: dict | None = None

    @classmethod
    def create(cls, path: str | Path, pepper: bytes | None = None) -> "LocalKeyFile":
        """Create a new key file (refuses to overwrite one): a random 32-byte master key, and a random
        32-byte pepper unless one is given (key rotation keeps the pepper, or pseudonyms change)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "version": KEY_FILE_VERSION,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "master_key": base64.b64encode(os.urandom(32)).decode(),
            "pepper": base64.b64encode(pepper if pepper is not None else os.urandom(32)).decode(),
        }
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyProviderError(f"key file {path}: already exists, not overwritten") from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh)
        return cls(path)

    def _load(self) -> dict:
        if self._data is None:
            if not self.path.exists():
                raise KeyProviderError(f"key file {self.path}: missing")
            mode = stat.S_IMODE(self.path.stat().st_mode)
            if mode & 0o077:
                raise KeyProviderError(f"key file {self.path}: readable by others (mode {mode:o}); chmod 600 it")
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                key, pepper = base64.b64decode(data["master_key"]), base64.b64decode(data["pepper"])
            except (ValueError, KeyError, TypeError) as exc:
                raise KeyProviderError(f"key file {self.path}: unreadable ({type(exc).__name__})") from None
            if len(key) != 32 or len(pepper) < 16:
                raise KeyProviderError(f"key file {self.path}: master key must be 32 bytes and pepper at least 16")
            self._data = {"master_key": key, "pepper": pepper}
        return self._data

    def master_key(self) -> bytes:
        return self._load()["master_key"]

    def pepper(self) -> bytes:
        return self._load()["pepper"]

    def key_id(self) -> str:
        """A fingerprint naming the master key in vault headers (never the key itself)."""
        return "local:" + hashlib.sha256(b"snds-key-id" + self.master_key()).hexdigest()[:16]
