"""Pseudonyms and the encrypted vault (issue #3 core): determinism, keys, tampering, crash safety."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from helpers import damage_sealed
from spark_jobs.keys import KeyProviderError, LocalKeyFile
from spark_jobs.vault import Argon2Params, Vault, VaultError, check_separate, is_pseudonymisable, pseudonym

FAST = Argon2Params(time_cost=1, memory_cost_kib=64, parallelism=1)


def test_pseudonyms_deterministic_keyed_hex():
    a = pseudonym("ABCDEFGHIJKLMNOPQ", b"p" * 32, FAST)
    assert a == pseudonym("ABCDEFGHIJKLMNOPQ", b"p" * 32, FAST)
    assert a != pseudonym("ABCDEFGHIJKLMNOPQ", b"q" * 32, FAST)  # another pepper, another pseudonym
    assert a != pseudonym("ABCDEFGHIJKLMNOPR", b"p" * 32, FAST)
    assert len(a) == 64 and a == a.lower() and int(a, 16) >= 0
    assert pseudonym("X1", b"p" * 32) != pseudonym("X1", b"p" * 32, FAST)  # parameters matter
    for bad in (None, "", "  ", "xxxxxxxxxxxxxxxxx", "XXXXXXXXXXXXXXXXD"):
        assert not is_pseudonymisable(bad)
    with pytest.raises(ValueError):
        pseudonym("XXXXXXXXXXXXXXXXD", b"p" * 32, FAST)


def test_key_file_created_private_and_checked(tmp_path):
    keys = LocalKeyFile.create(tmp_path / "k" / "region.key")
    assert stat.S_IMODE(keys.path.stat().st_mode) == 0o600
    assert len(keys.pepper()) == 32 and keys.key_id().startswith("local:")
    assert keys.unwrap(keys.wrap(b"k" * 32)) == b"k" * 32
    with pytest.raises(KeyProviderError, match="already exists"):
        LocalKeyFile.create(keys.path)
    os.chmod(keys.path, 0o644)
    with pytest.raises(KeyProviderError, match="readable by others"):
        LocalKeyFile(keys.path).wrap(b"k" * 32)
    with pytest.raises(KeyProviderError, match="missing"):
        LocalKeyFile(tmp_path / "none.key").pepper()


def test_vault_roundtrip_versions_and_wrong_key(tmp_path):
    keys = LocalKeyFile.create(tmp_path / "keys" / "a.key")
    vault = Vault(tmp_path / "vault", keys)
    assert vault.load() == ({}, None)
    v1 = vault.save({"A" * 17: "aa", "B" * 17: "bb"}, FAST)
    v2 = vault.save({"A" * 17: "aa", "B" * 17: "bb", "C" * 17: "cc"}, FAST)
    assert (v1, v2) == ("v000001", "v000002")
    mapping, params = Vault(tmp_path / "vault", keys).load()
    assert mapping == {"A" * 17: "aa", "B" * 17: "bb", "C" * 17: "cc"} and params == FAST
    raw = (tmp_path / "vault" / "versions" / "v000002.vault").read_bytes()
    assert b"AAAAAAAAAAAAAAAAA" not in raw and b"CCCCC" not in raw  # raw IDs never in clear
    other = LocalKeyFile.create(tmp_path / "keys" / "b.key")
    with pytest.raises(VaultError, match=r"v000002.vault: its data key does not open: key file .*b.key: does not hold master key local:.*: wrong key"):
        Vault(tmp_path / "vault", other).load()


@pytest.mark.parametrize("damage", ["flip_payload", "flip_header", "truncate", "garbage"])
def test_tampered_or_truncated_vault_is_refused(tmp_path, damage):
    keys = LocalKeyFile.create(tmp_path / "k.key")
    vault = Vault(tmp_path / "vault", keys)
    vault.save({"A" * 17: "aa"}, FAST)
    path = tmp_path / "vault" / "versions" / "v000001.vault"
    path.write_bytes(damage_sealed(path.read_bytes(), damage))
    with pytest.raises(VaultError, match=r"v000001.vault: "):
        vault.load()


def test_crash_during_save_keeps_previous_version(tmp_path, monkeypatch):
    keys = LocalKeyFile.create(tmp_path / "k.key")
    vault = Vault(tmp_path / "vault", keys)
    vault.save({"A" * 17: "aa"}, FAST)

    def crash(version):
        raise OSError("power cut (simulated)")

    monkeypatch.setattr(vault, "_switch", crash)
    with pytest.raises(OSError, match="simulated"):
        vault.save({"A" * 17: "aa", "B" * 17: "bb"}, FAST)
    assert Vault(tmp_path / "vault", keys).load()[0] == {"A" * 17: "aa"}


def test_rotation_rewraps_without_rehashing(tmp_path):
    old = LocalKeyFile.create(tmp_path / "old.key")
    vault = Vault(tmp_path / "vault", old)
    vault.save({"A" * 17: "aa"}, FAST)
    new = LocalKeyFile.create(tmp_path / "new.key", pepper=old.pepper())
    assert vault.rotate(new) == "v000002"
    assert Vault(tmp_path / "vault", new).load()[0] == {"A" * 17: "aa"}
    with pytest.raises(VaultError, match="wrong key"):
        Vault(tmp_path / "vault", old).load()
    with pytest.raises(VaultError, match="another pepper"):
        Vault(tmp_path / "vault", new).rotate(LocalKeyFile.create(tmp_path / "other.key"))


def test_vault_must_live_apart_from_the_lake(tmp_path):
    check_separate(tmp_path / "vault", tmp_path / "lake")
    for vault, lake in ((tmp_path / "lake" / "vault", tmp_path / "lake"), (tmp_path / "x", tmp_path / "x"),
                        (tmp_path / "v", tmp_path / "v" / "lake")):
        with pytest.raises(VaultError, match="overlap"):
            check_separate(vault, lake)


def test_reidentification_needs_key_and_reason_and_is_audited(tmp_path):
    import json
    import subprocess
    import sys

    from conftest import PROJECT_ROOT

    keys = LocalKeyFile.create(tmp_path / "k.key")
    raw = ["A" * 17, "B" * 17]
    mapping = {r: pseudonym(r, keys.pepper(), FAST) for r in raw}
    Vault(tmp_path / "vault", keys).save(mapping, FAST)
    asked = tmp_path / "asked.txt"
    asked.write_text(mapping["B" * 17] + "\n" + "0" * 64 + "\n")
    audit = tmp_path / "audit" / "reid.jsonl"

    def run(*extra):
        args = ["--vault", str(tmp_path / "vault"), "--pseudonyms", str(asked), "--audit-log", str(audit), *extra]
        return subprocess.run([sys.executable, "-m", "spark_jobs.reidentify", *args], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=120)

    proc = run("--key-file", str(keys.path), "--out", str(tmp_path / "out.csv"), "--reason", "ticket 42: adverse event follow-up")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.csv").read_text() == f"pseudonym,raw_id\n{mapping['B' * 17]},{'B' * 17}\n"
    assert stat.S_IMODE((tmp_path / "out.csv").stat().st_mode) == 0o600
    record = json.loads(audit.read_text().splitlines()[-1])
    assert (record["outcome"], record["asked"], record["found"], record["vault_version"]) == ("granted", 2, 1, "v000001")
    assert record["reason"].startswith("ticket 42") and record["who"]
    assert "B" * 17 not in audit.read_text()  # the audit log names counts, never identifiers

    proc = run("--key-file", str(tmp_path / "missing.key"), "--out", str(tmp_path / "o2.csv"), "--reason", "a good reason here")
    assert proc.returncode == 2 and "missing" in proc.stderr and not (tmp_path / "o2.csv").exists()
    proc = run("--key-file", str(keys.path), "--out", str(tmp_path / "o3.csv"), "--reason", "why")
    assert proc.returncode == 2 and "reason" in proc.stderr
    outcomes = [json.loads(line)["outcome"] for line in audit.read_text().splitlines()]
    assert outcomes == ["granted", "refused", "refused"]  # refused attempts are audited too
    assert "B" * 17 not in audit.read_text()


def test_pending_deltas_checked_merged_and_crash_safe(tmp_path, monkeypatch):
    keys = LocalKeyFile.create(tmp_path / "k.key")
    vault = Vault(tmp_path / "vault", keys)
    vault.save({"A" * 17: "aa"}, FAST)
    vault.add_pending("run-1", {"B" * 17: "bb"}, FAST)
    assert vault.load() == ({"A" * 17: "aa"}, FAST)
    assert vault.load(include_pending=True)[0] == {"A" * 17: "aa", "B" * 17: "bb"}
    assert b"BBBBB" not in (tmp_path / "vault" / "pending" / "run-1.delta").read_bytes()
    # A crash after the new version is written but before the deltas are deleted loses nothing:
    # merging them again is a no-op.
    monkeypatch.setattr(Path, "unlink", lambda self, *a, **k: (_ for _ in ()).throw(OSError("crash (simulated)")))
    with pytest.raises(OSError, match="simulated"):
        vault.commit_pending()
    monkeypatch.undo()
    assert vault.current_version() == "v000002"
    assert vault.commit_pending() == {"version": "v000002", "merged_deltas": 1, "new_entries": 0, "entries": 2}
    # A delta that maps a known identifier elsewhere (another pepper) is refused, as is a damaged one.
    vault.add_pending("run-2", {"A" * 17: "zz"}, FAST)
    with pytest.raises(VaultError, match="run-2.delta: gives another pseudonym"):
        vault.load(include_pending=True)
    (tmp_path / "vault" / "pending" / "run-2.delta").write_bytes(b"garbage")
    with pytest.raises(VaultError, match="run-2.delta: not a vault file"):
        vault.commit_pending()
    assert vault.load()[0] == {"A" * 17: "aa", "B" * 17: "bb"}  # the current version is untouched
