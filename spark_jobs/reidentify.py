"""Re-identification: pseudonym -> raw identifier, for an authorised person, with an audit record.

    python -m spark_jobs.reidentify --vault DIR --key-file FILE --pseudonyms IN.txt --out OUT.csv \
        --reason "why" --audit-log AUDIT.jsonl
    (KMS regions: --kms-key-arn ARN --kms-region R instead of --key-file)

Never called by the pipeline. It needs the region's key (reading the key file is the permission) and a
stated reason; every call, granted or refused, appends one JSON line to the audit log (who, when, vault
version, how many pseudonyms asked and found, why) before anything is written. The output file is
created with mode 0600.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import socket
import sys
from pathlib import Path

from spark_jobs.keys import KeyProviderError
from spark_jobs.vault import Vault, VaultError


def _audit(audit_log: Path, record: dict) -> None:
    audit_log.parent.mkdir(parents=True, exist_ok=True)
    with open(audit_log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def reidentify(vault_dir: Path, keys, pseudonyms: list[str], reason: str, audit_log: Path) -> dict[str, str]:
    """Raw identifiers of the `pseudonyms` found in the vault. Every call, granted or refused, is audited
    (counts and reason, never identifiers) before anything is returned."""
    record = {
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "who": getpass.getuser(),
        "host": socket.gethostname(),
        "vault": str(vault_dir),
        "asked": len(pseudonyms),
        "reason": reason.strip(),
    }
    try:
        if len(reason.strip()) < 10:
            raise ValueError("a reason of at least 10 characters is required for re-identification")
        vault = Vault(vault_dir, keys)
        mapping, _ = vault.load(include_pending=True)
    except (VaultError, KeyProviderError, ValueError) as exc:
        _audit(audit_log, {**record, "outcome": "refused", "error": str(exc)})
        raise
    reverse = {p: r for r, p in mapping.items()}
    found = {p: reverse[p] for p in pseudonyms if p in reverse}
    _audit(audit_log, {**record, "outcome": "granted", "vault_version": vault.current_version(), "found": len(found)})
    return found


def main(argv: list[str] | None = None) -> int:
    from spark_jobs.stepargs import add_pseudonymisation_args, key_provider_from_args

    p = argparse.ArgumentParser(prog="spark_jobs.reidentify", description=__doc__.split("\n\n")[0])
    add_pseudonymisation_args(p, argon2=False)
    p.add_argument("--pseudonyms", required=True, type=Path, help="text file, one pseudonym per line")
    p.add_argument("--out", required=True, type=Path, help="CSV written: pseudonym,raw_id (mode 0600)")
    p.add_argument("--reason", required=True)
    p.add_argument("--audit-log", required=True, type=Path)
    args = p.parse_args(argv)
    wanted = [line.strip() for line in args.pseudonyms.read_text(encoding="utf-8").splitlines() if line.strip()]
    try:
        keys, vault_root, _ = key_provider_from_args(args)
        found = reidentify(vault_root, keys, wanted, args.reason, args.audit_log)
    except (VaultError, KeyProviderError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("pseudonym,raw_id\n")
        for pseudo in wanted:
            if pseudo in found:
                fh.write(f"{pseudo},{found[pseudo]}\n")
    print(f"{len(found)} of {len(wanted)} pseudonyms re-identified into {args.out}; audit: {args.audit_log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
