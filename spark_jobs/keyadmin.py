"""Key and vault administration: the work behind the encryption tasks of the DAGs, also usable by hand.

    python -m spark_jobs.keyadmin check  --vault DIR --key-file FILE [--create-key] [--lake DIR ...]
    python -m spark_jobs.keyadmin commit --vault DIR --key-file FILE
    python -m spark_jobs.keyadmin rotate --vault DIR --key-file FILE

- check:  the key exists (created on first use when allowed) and opens every vault file (current
          version and pending deltas, all authenticated); the vault lies apart from the lake; the
          vault's argon2 parameters are the configured ones. Prints a status without secrets.
- commit: merges the pending deltas written by ingest runs into a new vault version.
- rotate: a new master key (local key ring: the old one is kept, retired, for older versions; KMS:
          the configured key ARN), then the current vault version re-wrapped under it, without
          re-hashing. A crash in between leaves a vault that the key ring still opens.
KMS regions give --kms-key-arn and --kms-region instead of --key-file.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from spark_jobs.keys import KeyProviderError, LocalKeyFile
from spark_jobs.vault import Argon2Params, Vault, VaultError, check_params, check_separate

log = logging.getLogger("snds.keys")


def check_keys(keys, vault_root: Path, params: Argon2Params | None, lake_roots: list[Path],
               create_if_missing: bool = False) -> dict:
    for lake in lake_roots:
        check_separate(vault_root, lake)
    created = keys.provision(create_if_missing)
    vault = Vault(vault_root, keys)
    mapping, vault_params = vault.load(include_pending=True)  # opens and authenticates every file
    check_params(vault_root, vault_params, params)
    status = {"vault": str(vault_root), "vault_version": vault.current_version(), "entries": len(mapping),
              "pending_deltas": len(vault.pending_files()), "key_id": keys.key_id(), "key_created": created,
              "argon2": asdict(vault_params or params) if (vault_params or params) else None}
    log.info("keys: %s %s; vault %s version %s, %d identifiers, %d pending deltas",
             keys.describe(), "created" if created else "ok", vault_root, status["vault_version"] or "(empty)",
             status["entries"], status["pending_deltas"])
    return status


def update_vault(keys, vault_root: Path) -> dict:
    result = Vault(vault_root, keys).commit_pending()
    log.info("vault %s: %d pending deltas merged, %d new identifiers, now version %s",
             vault_root, result["merged_deltas"], result["new_entries"], result["version"] or "(empty)")
    return result


def rotate_keys(keys, vault_root: Path) -> dict:
    vault = Vault(vault_root, keys)
    if vault.current_version() is None and not vault.pending_files():
        raise VaultError(f"vault {vault_root}: empty, nothing to rotate")
    old = keys.key_id()
    if isinstance(keys, LocalKeyFile):
        keys.rotate()
    version = vault.rotate()
    result = {"old_key_id": old, "new_key_id": keys.key_id(), "vault_version": version}
    log.info("vault %s re-wrapped from %s to %s: version %s", vault_root, old, result["new_key_id"], version)
    return result


def main(argv: list[str] | None = None) -> int:
    from spark_jobs.stepargs import add_pseudonymisation_args, key_provider_from_args, setup_logging

    p = argparse.ArgumentParser(prog="spark_jobs.keyadmin", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (("check", "check (or create) the key and open the vault"),
                        ("commit", "merge pending deltas into a new vault version"),
                        ("rotate", "new master key, vault re-wrapped without re-hashing")):
        sp = sub.add_parser(name, help=help_)
        add_pseudonymisation_args(sp, argon2=(name == "check"))
        if name == "check":
            sp.add_argument("--create-key", action="store_true", help="create the key file if missing")
            sp.add_argument("--lake", action="append", default=[], help="a lake root the vault must stay apart from")
    args = p.parse_args(argv)
    setup_logging()
    try:
        keys, vault_root, params = key_provider_from_args(args)
        if args.command == "check":
            result = check_keys(keys, vault_root, params, [Path(x) for x in args.lake], args.create_key)
        elif args.command == "commit":
            result = update_vault(keys, vault_root)
        else:
            result = rotate_keys(keys, vault_root)
    except (VaultError, KeyProviderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
