"""Scan for raw identifiers: does any raw patient identifier of a delivery appear under some paths?

    python -m spark_jobs.leakscan --delivery DIR [--config config/ingest.yaml] PATH [PATH ...]

The identifiers are the values of the identifier columns of every delivered file (config:
`identifier_columns`), placeholders and blanks excepted. Every file under the paths is searched: its
bytes as they are (logs, JSON reports, SQLite databases, Parquet footers and statistics) and, for
Parquet files, every value once decompressed (the data pages are zstd-compressed, so a byte search
alone would prove nothing). Exit code 1 and the offending files (never the values) when one is found.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from spark_jobs.delivery import IngestConfig
from spark_jobs.profiles import AUTO
from spark_jobs.stepargs import add_profile_args, ingest_config_from_args

_TOKEN = re.compile(rb"[A-Za-z0-9]+")


def delivery_identifiers(delivery: Path, cfg: IngestConfig) -> set[str]:
    ids: set[str] = set()
    encoding = cfg.encoding  # a Python codec name (utf-8, latin-1, cp1252)
    placeholders = set(cfg.placeholder_ids)
    for f in cfg.scan(delivery):
        positions = [c.position - 1 for c in f.identifier_columns]
        if not positions:
            continue
        with open(f.path, encoding=encoding, errors="replace", newline="") as fh:
            next(fh, None)
            for line in fh:
                fields = line.rstrip("\r\n").split(cfg.separator)
                if len(fields) != len(f.columns):
                    continue  # positions mean nothing in a malformed line (the quarantine masks its fields)
                for p in positions:
                    if p < len(fields):
                        v = fields[p]
                        if v.strip() and v not in placeholders:
                            ids.add(v)
    return ids


def _found(blob: bytes, tokens: set[bytes], others: list[bytes]) -> bool:
    if tokens and any(t in tokens for t in _TOKEN.findall(blob)):
        return True
    return any(o in blob for o in others)


def scan(paths: list[Path], identifiers: set[str]) -> list[str]:
    """Files (under `paths`) holding any of `identifiers`, with where: 'bytes' or 'parquet values'."""
    import duckdb

    encoded = [i.encode("utf-8") for i in identifiers] + [i.encode("latin-1", "ignore") for i in identifiers]
    tokens = {e for e in encoded if _TOKEN.fullmatch(e)}
    others = sorted({e for e in encoded if not _TOKEN.fullmatch(e)})
    leaks = []
    con = duckdb.connect()
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if _found(path.read_bytes(), tokens, others):
                leaks.append(f"{path}: bytes")
            elif path.suffix == ".parquet":
                rows = con.execute("SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
                text = "\n".join("\t".join("" if v is None else str(v) for v in row) for row in rows)
                if _found(text.encode("utf-8"), tokens, others):
                    leaks.append(f"{path}: parquet values")
    return leaks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="spark_jobs.leakscan", description=__doc__.split("\n\n")[0])
    p.add_argument("--delivery", required=True, type=Path)
    p.add_argument("--config", default=None)
    add_profile_args(p)
    p.add_argument("paths", nargs="+", type=Path)
    args = p.parse_args(argv)
    # Without --profile, the delivery's own profile is detected: the scan reads the identifiers as the
    # sender wrote them, whatever profile the run used.
    args.profile = args.profile or AUTO
    cfg = ingest_config_from_args(args, args.delivery)
    ids = delivery_identifiers(args.delivery, cfg)
    existing = [x for x in args.paths if x.exists()]
    leaks = scan(existing, ids)
    n_files = sum(1 if x.is_file() else sum(1 for q in x.rglob("*") if q.is_file()) for x in existing)
    if leaks:
        print(f"RAW IDENTIFIERS FOUND in {len(leaks)} file(s):", *leaks, sep="\n  ")
        return 1
    print(f"leak scan: none of the {len(ids):,} raw identifiers of {args.delivery} appears in the "
          f"{n_files:,} files under {', '.join(str(x) for x in existing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
