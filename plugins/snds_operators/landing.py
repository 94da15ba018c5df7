"""Landing watch: is a delivery in a region's landing zone complete, and can its release start?

A landing zone holds one directory (S3: one sub-prefix) per delivery, named after the release:

    <landing_root>/<release>/ER_PRS_F.csv, IR_BEN_R.csv, T_MCO19B.csv, ...   the table files
    <landing_root>/<release>/SHA256SUMS                                       written LAST by the sender

`SHA256SUMS` is in `sha256sum` format (`<hex>  <file name>` per line), so `sha256sum -c SHA256SUMS`
verifies a delivery by hand. A delivery is complete when its manifest is there, lists exactly the
delivered files with matching checksums, nothing in it changed during the quiet period (a file still
being written) and every required table has a file. Anything else makes it incomplete, with the
reasons in `problems`: short texts naming files, never their content (raw identifiers stay out of logs).

The landing zone is a local directory (a path or a file:// URI) or an S3 prefix (s3://bucket/prefix/,
read with the boto3 client the caller passes: in Airflow `S3Hook(aws_conn_id=...).get_conn()`).

    python -m snds_operators.landing manifest DIR
    python -m snds_operators.landing check LOCATION [--required-tables T ...] [--quiet-seconds S] [--profile P]
    python -m snds_operators.landing scan LANDING_ROOT [--required-tables T ...] [--profile P]

Cheap to import (Airflow's plugin manager imports every module of the plugins folder): the standard
library only at module level; PyYAML, the ingest configuration and boto3 are imported when used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from spark_jobs.delivery import MANIFEST  # noqa: E402  (the ingest skips it)
from spark_jobs.uris import is_s3, normalize, split_s3  # noqa: E402

#: A release id (also the name of its delivery directory).
DEFAULT_RELEASE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
CHUNK = 1 << 20  # checksums are computed 1 MiB at a time
S3_PAGE_SIZE = 1000  # keys per list_objects_v2 call (the S3 maximum)

# `sha256sum` output: hash, space, ' ' (text) or '*' (binary), name; a leading backslash marks an
# escaped name (\\ and \n). Also the BSD/`--tag` form: SHA256 (name) = hash.
_GNU_LINE = re.compile(r"^(\\?)([0-9a-fA-F]{64}) [ *](.+)$")
_BSD_LINE = re.compile(r"^(\\?)SHA256 \((.+)\) = ([0-9a-fA-F]{64})$")


@dataclass
class DeliveryCheck:
    release: str
    location: str  # URI: file:///... or s3://bucket/prefix/release/
    status: str  # "complete" | "incomplete"
    problems: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # delivered file names (manifest excluded), sorted
    bytes: int = 0  # total size of `files`
    manifest_sha256: str | None = None  # sha256 of the manifest's bytes: identifies the delivery version

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------- manifest
def _is_delivery_file(name: str) -> bool:
    """A file that belongs to the delivery proper (and to its manifest): not the manifest itself, not
    hidden, not `_`-prefixed (the generator's `_truth/`, temporary files)."""
    return name != MANIFEST and not name.startswith((".", "_"))


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(delivery_dir) -> Path:
    """Write `<delivery_dir>/SHA256SUMS` for the files directly in `delivery_dir` (sorted names; the
    manifest itself, sub-directories and names starting with `_` or `.` excluded). Written to a hidden
    temporary file first and renamed, so a watcher never sees half a manifest. Returns its path."""
    d = Path(delivery_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: not a directory")
    lines = []
    for name in sorted(e.name for e in os.scandir(d) if _is_delivery_file(e.name) and e.is_file()):
        if "\n" in name or "\\" in name or "\r" in name:
            raise ValueError(f"{d}: file name {name!r} has a line break or a backslash: not for a delivery")
        lines.append(f"{_sha256_file(d / name)}  {name}\n")
    target = d / MANIFEST
    tmp = d / f".{MANIFEST}.tmp"
    tmp.write_text("".join(lines), encoding="utf-8", newline="\n")
    os.replace(tmp, target)
    return target


def parse_manifest(text: str) -> tuple[dict[str, str], list[str]]:
    """`sha256sum` lines -> ({file name: lower-case hex}, problems). A leading `./` is dropped."""
    entries: dict[str, str] = {}
    problems: list[str] = []
    for no, raw in enumerate(text.splitlines(), start=1):
        line = raw.lstrip("\ufeff") if no == 1 else raw
        if not line.strip():
            continue
        m = _GNU_LINE.match(line)
        if m:
            escaped, digest, name = m.groups()
        else:
            m = _BSD_LINE.match(line)
            if not m:
                problems.append(f"{MANIFEST} line {no}: not `<sha256>  <file name>`")
                continue
            escaped, name, digest = m.groups()
        if escaped:
            name = re.sub(r"\\(.)", lambda g: "\n" if g.group(1) == "n" else g.group(1), name)
        if name.startswith("./"):
            name = name[2:]
        if name in entries:
            problems.append(f"{name}: listed twice in the manifest")
            continue
        entries[name] = digest.lower()
    if not entries and not problems:
        problems.append(f"{MANIFEST} lists no file")
    return entries, problems


# --------------------------------------------------------------------------------------------- locations
def _s3_location(uri: str) -> tuple[str, str]:
    """s3://bucket/a/b -> ("bucket", "a/b/"): the prefix of the objects under it."""
    bucket, prefix = split_s3(uri)
    return bucket, (prefix + "/" if prefix else "")


@dataclass
class _Entry:
    name: str
    size: int
    mtime: float  # seconds since the epoch; local: max(mtime, ctime), S3: LastModified


class _Local:
    def __init__(self, directory: Path):
        self.dir = directory

    @property
    def uri(self) -> str:
        return Path(os.path.abspath(self.dir)).as_uri()

    def list(self) -> tuple[list[_Entry], float | None] | None:
        """Top-level files and the directory's own change time; None when there is no directory."""
        if not self.dir.is_dir():
            return None
        entries = []
        for e in os.scandir(self.dir):
            try:
                if not e.is_file():
                    continue
                st = e.stat()
            except FileNotFoundError:  # removed while listing (a sender's temporary file)
                continue
            # ctime too: `rsync -t` and `cp -p` give a file that just landed an old mtime.
            entries.append(_Entry(e.name, st.st_size, max(st.st_mtime, st.st_ctime)))
        st = self.dir.stat()
        return entries, max(st.st_mtime, st.st_ctime)

    def read(self, name: str) -> bytes:
        return (self.dir / name).read_bytes()

    def sha256(self, name: str) -> str:
        return _sha256_file(self.dir / name)


class _S3:
    def __init__(self, client, bucket: str, prefix: str):
        self.client, self.bucket, self.prefix = client, bucket, prefix

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def list(self) -> tuple[list[_Entry], float | None] | None:
        entries = []
        for page in _s3_pages(self.client, self.bucket, self.prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(self.prefix):]
                if not name or name.endswith("/"):  # "directory" marker objects
                    continue
                entries.append(_Entry(name, int(obj["Size"]), obj["LastModified"].timestamp()))
        return entries, None

    def read(self, name: str) -> bytes:
        body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + name)["Body"]
        try:
            return body.read()
        finally:
            body.close()

    def sha256(self, name: str) -> str:
        h = hashlib.sha256()
        body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + name)["Body"]
        try:
            for chunk in body.iter_chunks(CHUNK):
                h.update(chunk)
        finally:
            body.close()
        return h.hexdigest()


def _s3_pages(client, bucket: str, prefix: str):
    """list_objects_v2 pages of the keys and sub-prefixes directly under `prefix`."""
    return client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, Delimiter="/", PaginationConfig={"PageSize": S3_PAGE_SIZE})


def _s3_client(client):
    if client is not None:
        return client
    from spark_jobs.objectstore import s3_client  # lazily: only the S3 case needs boto3

    return s3_client(None)


# --------------------------------------------------------------------------------------------- tables
def _ingest_config(ingest_config, profile=None):
    """The ingest configuration with the delivery profile whose `uncatalogued` policy decides whether
    a file of no catalogued table makes the delivery incomplete (`auto`: detected at ingest; the
    default profile's policy here)."""
    from spark_jobs.delivery import IngestConfig  # lazily: PyYAML and the ingest configuration
    from spark_jobs.profiles import AUTO

    return IngestConfig.load(ingest_config, profile=None if profile == AUTO else profile)


def required_tables_from_config(ingest_config_path) -> list[str]:
    """The tables marked `required: true` in an ingest configuration (config/ingest.yaml), in its order."""
    import yaml

    with open(ingest_config_path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    return [name for name, spec in (raw.get("tables") or {}).items() if (spec or {}).get("required") is True]


def _default_ingest_config() -> Path:
    from spark_jobs.delivery import CONFIG_DIR

    return CONFIG_DIR / "ingest.yaml"


def _table_problems(names: list[str], required_tables, cfg) -> list[str]:
    """File -> table with the ingest's own matcher (IngestConfig.identify, the one `scan` uses): files
    the ingest would reject (an uncatalogued file when the profile says `uncatalogued: error`, a table
    delivered twice, an uncatalogued file named like a catalogued table, no catalogued table at all)
    and required tables without a file. Like the ingest, only `.csv` files count; other files are ignored."""
    from spark_jobs.delivery import uncatalogued_table_name

    problems = []
    policy = cfg.profile.uncatalogued
    seen: dict[tuple[str, int | None], str] = {}
    uncatalogued: dict[str, str] = {}
    for name in names:
        if not name.lower().endswith(".csv"):
            continue
        found = cfg.identify(PurePosixPath(name))
        if found is None:
            if policy == "error":
                problems.append(f"{name}: matches no catalogued table (profile {cfg.profile.name}: "
                                "uncatalogued: error)")
            elif policy == "text":
                table = uncatalogued_table_name(PurePosixPath(name))
                if table in uncatalogued:
                    problems.append(f"{name}: uncatalogued table {table} is also delivered in {uncatalogued[table]}")
                uncatalogued.setdefault(table, name)
            continue
        table, year = found
        if (table, year) in seen:
            problems.append(f"{name}: table {table}{'' if year is None else f' (year {year})'} "
                            f"is also delivered in {seen[(table, year)]}")
            continue
        seen[(table, year)] = name
    present = {t for t, _ in seen}
    problems += [f"{uncatalogued[t]}: uncatalogued file would be ingested under the catalogued name {t}"
                 for t in sorted(set(uncatalogued) & present)]
    problems += [f"required table {t}: no file" for t in required_tables if t not in present]
    if not seen and not problems and any(n.lower().endswith(".csv") for n in names):
        problems.append("no file of a catalogued SNDS table (expected e.g. ER_PRS_F.csv or T_MCO19B.csv)")
    return problems


# --------------------------------------------------------------------------------------------- checks
def _age_problem(what: str, age: float, quiet_seconds: float, tail: str) -> str:
    return f"{what}: modified {max(0, int(age))} s ago (< {quiet_seconds:g} s quiet period): {tail}"


def _check(store, release: str, required_tables, quiet_seconds: float, now: float, cfg) -> DeliveryCheck:
    check = DeliveryCheck(release=release, location=store.uri, status="incomplete")
    listed = store.list()
    if listed is None:
        check.problems.append("delivery directory not found")
        return check
    entries, dir_mtime = listed
    by_name = {e.name: e for e in entries}
    delivered = sorted(n for n in by_name if _is_delivery_file(n))
    check.files = delivered
    check.bytes = sum(by_name[n].size for n in delivered)
    problems = check.problems

    # Quiet period: any file of the directory (hidden and temporary ones too: a transfer in progress).
    recent = set()
    if dir_mtime is not None and now - dir_mtime < quiet_seconds:
        problems.append(_age_problem("delivery directory", now - dir_mtime, quiet_seconds, "files still arriving"))
    for e in sorted(entries, key=lambda e: e.name):
        if now - e.mtime < quiet_seconds:
            recent.add(e.name)
            problems.append(_age_problem(e.name, now - e.mtime, quiet_seconds, "still being written"))

    if not delivered:
        problems.append("no file delivered yet")
    manifest: dict[str, str] = {}
    if MANIFEST not in by_name:
        problems.append(f"no {MANIFEST} manifest yet")
    elif MANIFEST not in recent:
        content = store.read(MANIFEST)
        check.manifest_sha256 = hashlib.sha256(content).hexdigest()
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"{MANIFEST}: not UTF-8 text")
        else:
            manifest, manifest_problems = parse_manifest(text)
            problems += manifest_problems
        for name in sorted(manifest):
            if name == MANIFEST:
                problems.append(f"{MANIFEST}: lists itself")
            elif name not in by_name or not _is_delivery_file(name):
                problems.append(f"{name}: listed in the manifest but missing")
        for name in delivered:
            if name not in manifest:
                problems.append(f"{name}: not listed in the manifest")
    # else: the manifest itself is still being written; read it once it is quiet

    problems += _table_problems(delivered, required_tables, cfg)

    # Checksums last (the costly part), only of listed files that are no longer changing.
    for name in delivered:
        if name in manifest and name not in recent:
            if store.sha256(name) != manifest[name]:
                problems.append(f"{name}: checksum mismatch")

    check.status = "incomplete" if problems else "complete"
    return check


def _validate_required(required_tables, cfg) -> list[str]:
    required = list(required_tables)
    unknown = [t for t in required if t not in cfg.tables]
    if unknown:
        raise ValueError(f"required tables not in the ingest configuration: {', '.join(unknown)}")
    return required


def check_delivery(location: str, *, required_tables: list[str], quiet_seconds: float = 300,
                   now: float | None = None, s3_client=None, ingest_config=None,
                   profile: str | None = None) -> DeliveryCheck:
    """Check the one delivery at `location` (a local path, a file:// URI or s3://bucket/prefix/release/).

    `required_tables`: tables that must have a file (see `required_tables_from_config`). `now`: the
    time to measure the quiet period from (seconds since the epoch; default: the current time).
    `s3_client`: a boto3 S3 client for s3:// locations (default: `boto3.client("s3")`).
    `ingest_config`: the ingest configuration whose tables name the files (default: config/ingest.yaml).
    `profile`: the delivery profile the ingest will use (its `uncatalogued` policy; default: native).
    """
    now = time.time() if now is None else float(now)
    cfg = _ingest_config(ingest_config, profile)
    required = _validate_required(required_tables, cfg)
    if is_s3(location):
        bucket, prefix = _s3_location(location)
        if not prefix:
            raise ValueError(f"{location}: a delivery is a prefix inside the bucket, not the bucket itself")
        store = _S3(_s3_client(s3_client), bucket, prefix)
        release = prefix.rstrip("/").rsplit("/", 1)[-1]
    else:
        path = Path(normalize(location))
        store = _Local(path)
        release = Path(os.path.abspath(path)).name
    return _check(store, release, required, quiet_seconds, now, cfg)


def scan_landing(landing_root: str, *, required_tables: list[str], quiet_seconds: float = 300,
                 release_pattern: str = DEFAULT_RELEASE_PATTERN, now: float | None = None, s3_client=None,
                 ingest_config=None, profile: str | None = None) -> list[DeliveryCheck]:
    """One `check_delivery` per immediate sub-directory (S3: sub-prefix) of `landing_root` whose name
    matches `release_pattern`, sorted by release. Other entries are ignored. A local landing root that
    does not exist is an error (a configuration mistake, not an empty landing zone)."""
    now = time.time() if now is None else float(now)
    pattern = re.compile(release_pattern)
    cfg = _ingest_config(ingest_config, profile)
    required = _validate_required(required_tables, cfg)
    stores = []
    if is_s3(landing_root):
        client = _s3_client(s3_client)
        bucket, prefix = _s3_location(landing_root)
        for page in _s3_pages(client, bucket, prefix):
            for cp in page.get("CommonPrefixes", []):
                release = cp["Prefix"][len(prefix):].rstrip("/")
                if pattern.match(release):
                    stores.append((release, _S3(client, bucket, cp["Prefix"])))
    else:
        root = Path(normalize(landing_root))
        if not root.is_dir():
            raise FileNotFoundError(f"{landing_root}: landing zone not found")
        for e in os.scandir(root):
            if e.is_dir() and pattern.match(e.name):
                stores.append((e.name, _Local(Path(e.path))))
    return [_check(store, release, required, quiet_seconds, now, cfg)
            for release, store in sorted(stores, key=lambda s: s[0])]


# --------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m snds_operators.landing", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("manifest", help=f"write DIR/{MANIFEST} (sha256sum format) for the files of DIR")
    m.add_argument("dir")
    for name, helptext in (("check", "check one delivery (exit 1 when incomplete)"),
                           ("scan", "check every delivery of a landing zone")):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("location")
        c.add_argument("--required-tables", nargs="*", default=None,
                       help="tables that must have a file (default: required: true in the ingest configuration)")
        c.add_argument("--ingest-config", default=None, help="ingest configuration (default: config/ingest.yaml)")
        c.add_argument("--profile", default=None,
                       help="delivery profile the ingest will use: its `uncatalogued` policy (default: native)")
        c.add_argument("--quiet-seconds", type=float, default=300)
        if name == "scan":
            c.add_argument("--release-pattern", default=DEFAULT_RELEASE_PATTERN)
    a = p.parse_args(argv)
    if a.cmd == "manifest":
        print(write_manifest(a.dir))
        return 0
    required = a.required_tables
    if required is None:
        required = required_tables_from_config(a.ingest_config or _default_ingest_config())
    kw = dict(required_tables=required, quiet_seconds=a.quiet_seconds, ingest_config=a.ingest_config,
              profile=a.profile)
    if a.cmd == "check":
        result = check_delivery(a.location, **kw)
        print(json.dumps(result.to_dict(), indent=1))
        return 0 if result.complete else 1
    results = scan_landing(a.location, release_pattern=a.release_pattern, **kw)
    print(json.dumps([r.to_dict() for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
