"""The lake's files on a local disk or on S3, behind one small interface (pyarrow's filesystems).

The steps read deliveries, write Parquet zones, read Parquet footers and write JSON reports. Here
those locations are local directories; on EMR they are `s3://` prefixes. Every such access goes
through this module, so the step code is the same for both:

    zone = LakePath("s3://snds-fr-paris-lake/lake/runs/release=2026-01/ingest")   # or a local path
    list_files(zone / "ER_PRS_F", ".parquet")   read_bytes(p)   write_bytes(p, data)   delete_tree(p)

Writing a zone is staged then switched in (`StagedOutputs` in steprun), never visible half-written:
- local: the staged directory is renamed over the old one (`replace_directory`, atomic renames);
- S3 (no rename): each run writes a new version under `<zone>/_v/<version>/`, then one PUT of the
  pointer object `<zone>/_CURRENT` makes it current (atomic per object), then older versions are
  deleted. Readers resolve a zone with `current(zone)` first.

S3 access uses the standard AWS configuration (instance or job role, `AWS_REGION`, and
`AWS_ENDPOINT_URL`, which the tests point at a local S3 server), or the variables an Airflow task
derives from the region's AWS connection (`configure_s3`). Objects are encrypted by the lake
bucket's default encryption (SSE-KMS under the region's key, see docs/deployment.md).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import posixpath
import shutil
import time
from functools import lru_cache
from pathlib import Path

from spark_jobs.uris import is_s3, split_s3

log = logging.getLogger("snds.lakefs")

#: Pointer object naming a zone's current version, on object stores.
CURRENT = "_CURRENT"
#: Where a zone's versions live, on object stores.
VERSIONS = "_v"


class LakePath:
    """A location in the lake: a local path or an `s3://bucket/key` URI, joined with `/` like a
    pathlib.Path. `str()` gives the local path or the URI (s3a:// and s3n:// become s3://)."""

    __slots__ = ("uri",)

    def __init__(self, location: "str | Path | LakePath"):
        if isinstance(location, LakePath):
            self.uri = location.uri
            return
        text = str(location)
        if is_s3(text):
            bucket, key = split_s3(text)
            self.uri = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
        elif text.startswith("file://"):
            self.uri = text[len("file://"):]
        elif "://" in text:
            raise ValueError(f"unsupported location {text!r}: local paths, file:// or s3:// only")
        else:
            self.uri = str(Path(text))

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def __truediv__(self, part: str) -> "LakePath":
        return LakePath(self.uri.rstrip("/") + "/" + str(part).strip("/"))

    @property
    def name(self) -> str:
        return posixpath.basename(self.uri.rstrip("/"))

    @property
    def parent(self) -> "LakePath":
        if self.is_s3:
            bucket, key = split_s3(self.uri)
            return LakePath(f"s3://{bucket}/{posixpath.dirname(key)}")
        return LakePath(Path(self.uri).parent)

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    def with_name(self, name: str) -> "LakePath":
        return self.parent / name

    def local(self) -> Path:
        """The local path; refused for an object-store location (for code that only runs locally)."""
        if self.is_s3:
            raise ValueError(f"{self.uri}: a local path is needed here")
        return Path(self.uri)

    def __str__(self) -> str:
        return self.uri

    def __fspath__(self) -> str:
        return str(self.local())  # open() and os functions: local locations only

    def __repr__(self) -> str:
        return f"LakePath({self.uri!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, LakePath) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)


#: AWS variables given by `configure_s3` (an Airflow task's connection); else the environment's.
_aws_settings: dict[str, str] = {}


def configure_s3(aws_env: dict[str, str]) -> None:
    """Reach S3 with these AWS variables (AWS_ACCESS_KEY_ID, AWS_REGION, AWS_ENDPOINT_URL, ...)
    instead of the process environment's: Airflow tasks pass their AWS connection's."""
    _aws_settings.clear()
    _aws_settings.update(aws_env)
    _s3.cache_clear()


@lru_cache(maxsize=None)
def _s3() -> "object":
    import pyarrow.fs as pafs

    env = _aws_settings or os.environ
    settings = {}
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        settings.update(access_key=env["AWS_ACCESS_KEY_ID"], secret_key=env["AWS_SECRET_ACCESS_KEY"],
                        session_token=env.get("AWS_SESSION_TOKEN") or None)
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        settings["region"] = region
    # The AWS SDKs' endpoint variables (pyarrow's constructor does not read them by itself).
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        settings["endpoint_override"] = endpoint
    # The AWS SDK's defaults (1 s to connect, 3 s per request, 3 attempts) fail reads of large objects
    # on a busy worker; a slow request is retried rather than failing the step.
    return pafs.S3FileSystem(**settings, connect_timeout=10, request_timeout=120,
                             retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=6))


def filesystem(location) -> tuple["object", str]:
    """(pyarrow filesystem, path in it) of a location."""
    loc = LakePath(location)
    if loc.is_s3:
        return _s3(), loc.uri[len("s3://"):]
    import pyarrow.fs as pafs

    return pafs.LocalFileSystem(), os.path.abspath(loc.uri)


def _info(location):
    fs, path = filesystem(location)
    return fs.get_file_info(path)


def exists(location) -> bool:
    """Whether a file or a directory (an S3 prefix with objects under it) is there."""
    import pyarrow.fs as pafs

    loc = LakePath(location)
    if _info(loc).type != pafs.FileType.NotFound:
        return True
    return loc.is_s3 and bool(_list(loc, recursive=False, limit=True))


def is_file(location) -> bool:
    import pyarrow.fs as pafs

    return _info(location).type == pafs.FileType.File


def _list(location, recursive: bool, limit: bool = False) -> list:
    import pyarrow.fs as pafs

    fs, path = filesystem(location)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=recursive, allow_not_found=True))
    except NotADirectoryError:
        return []
    return infos[:1] if limit else infos


def list_files(location, suffix: str | None = None, recursive: bool = True) -> list[LakePath]:
    """The files under a directory (none if it does not exist), sorted by location; with `suffix`,
    those whose name ends with it (case-insensitive). Hidden and staging entries are included: callers
    filter by name."""
    import pyarrow.fs as pafs

    base = LakePath(location)
    _, root = filesystem(base)
    out = []
    for info in _list(base, recursive):
        if info.type != pafs.FileType.File:
            continue
        if suffix and not info.path.lower().endswith(suffix.lower()):
            continue
        out.append(base / posixpath.relpath(info.path, root))
    return sorted(out, key=str)


def list_entries(location) -> list[tuple[LakePath, bool]]:
    """(entry, is_directory) for the direct children of a directory, sorted."""
    import pyarrow.fs as pafs

    base = LakePath(location)
    _, root = filesystem(base)
    return sorted(((base / posixpath.relpath(i.path, root), i.type == pafs.FileType.Directory)
                   for i in _list(base, recursive=False)), key=lambda e: str(e[0]))


def read_bytes(location) -> bytes:
    fs, path = filesystem(location)
    with fs.open_input_stream(path) as fh:
        return fh.read()


def sha256(location) -> tuple[str, int]:
    """(SHA-256 hex digest, size in bytes) of a file, streamed (never held in memory whole)."""
    import hashlib

    digest, size = hashlib.sha256(), 0
    fs, path = filesystem(location)
    with fs.open_input_stream(path) as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def read_first_line(location) -> bytes:
    """The first line of a file (without reading the whole file)."""
    fs, path = filesystem(location)
    with fs.open_input_file(path) as fh:
        buf = b""
        while b"\n" not in buf:
            chunk = fh.read(65536)
            if not chunk:
                break
            buf += chunk
    return buf.split(b"\n", 1)[0] + (b"\n" if b"\n" in buf else b"")


def write_bytes(location, data: bytes) -> None:
    """A file written complete or not at all: locally written aside then renamed; on S3 one PUT."""
    loc = LakePath(location)
    if loc.is_s3:
        fs, path = filesystem(loc)
        with fs.open_output_stream(path) as fh:
            fh.write(data)
        return
    path = loc.local()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def read_json(location) -> dict:
    return json.loads(read_bytes(location).decode("utf-8"))


def write_json(location, payload: dict) -> None:
    write_bytes(location, (json.dumps(payload, indent=2, default=str) + "\n").encode("utf-8"))


def delete_tree(location) -> None:
    """Delete a file, or a directory and everything under it (nothing if absent)."""
    loc = LakePath(location)
    if not loc.is_s3:
        path = loc.local()
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()
        return
    fs, path = filesystem(loc)
    if is_file(loc):
        fs.delete_file(path)
    if _list(loc, recursive=False, limit=True):
        # delete_dir, not file by file: pyarrow re-creates an empty "directory" marker object for the
        # parent of each deleted file, which would be left behind.
        fs.delete_dir(path)


def make_dirs(location) -> None:
    """Create a local directory; nothing to do on S3 (prefixes exist with their objects)."""
    loc = LakePath(location)
    if not loc.is_s3:
        loc.local().mkdir(parents=True, exist_ok=True)


def move(source, target) -> None:
    """Move one file (a rename locally; a copy then a delete on S3)."""
    fs, src = filesystem(source)
    _, dst = filesystem(target)
    fs.move(src, dst)


def current(zone) -> LakePath:
    """The location holding a zone's current files: on an object store, the version `_CURRENT` names
    (the zone itself when it has no pointer, e.g. a prefix written by hand); locally the zone."""
    loc = LakePath(zone)
    if not loc.is_s3:
        return loc
    pointer = loc / CURRENT
    if not is_file(pointer):
        return loc
    version = read_bytes(pointer).decode("utf-8").strip()
    if not version.startswith(VERSIONS + "/") or ".." in version:
        raise ValueError(f"{pointer}: not a version pointer")
    return loc / version


def new_version(zone, tag: str) -> LakePath:
    """A fresh version location of an object-store zone: `<zone>/_v/<tag>-<UTC time>`, unique to this
    attempt (a retried run never writes over the version readers may be using)."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return LakePath(zone) / VERSIONS / f"{tag}-{stamp}"


def switch_version(zone, version) -> None:
    """Make `version` the zone's current one (one PUT of the pointer), then delete the others."""
    zone, version = LakePath(zone), LakePath(version)
    relative = posixpath.relpath(version.uri, zone.uri)
    write_bytes(zone / CURRENT, (relative + "\n").encode("utf-8"))
    for entry, is_dir in list_entries(zone / VERSIONS):
        if is_dir and entry != version:
            delete_tree(entry)
    # Files of a zone written before it had versions (or by hand) would shadow nothing but confuse.
    for entry, _ in list_entries(zone):
        if entry.name not in (CURRENT, VERSIONS):
            delete_tree(entry)


def duckdb_s3_filesystem():
    """An fsspec filesystem over the pyarrow S3 filesystem, registered with DuckDB so that its
    `read_parquet`, `read_csv` and `COPY ... TO` reach `s3://` without the httpfs extension (which
    DuckDB downloads at run time: not possible on a closed network)."""
    from fsspec.implementations.arrow import ArrowFile, ArrowFSWrapper

    class S3ArrowFS(ArrowFSWrapper):
        protocol = "s3"

        # fsspec's `exists` answers False on any error, and DuckDB checks a path with it before
        # reading: a failed request would become "no files found". Only a missing object is False
        # here; lookups and opens that fail for another reason are retried, then raised.
        def exists(self, path, **kwargs):
            try:
                self.info(path, **kwargs)
                return True
            except FileNotFoundError:
                return False

        def info(self, path, **kwargs):
            return _retried(super().info, path, **kwargs)

        def _open(self, path, mode="rb", *args, **kwargs):
            opened = _retried(super()._open, path, mode, *args, **kwargs)
            if mode == "rb" and opened.stream.seekable():
                # The same object, reading positionally (a second wrapper would close the stream
                # when the first one is collected).
                opened.__class__ = PositionalReads
            return opened

    class PositionalReads(ArrowFile):
        """A read-only S3 object whose reads are positional (`read_at`). DuckDB reads one file from
        several threads through one handle, as `seek(offset)` then `read(n)` with the GIL held; pyarrow
        releases the GIL inside `read` before it looks up the position, so another thread's seek could
        move it: a short read ("Failed to read ... only N bytes returned") or bytes from the wrong
        offset. Here the offset is taken when `read` is called, under the GIL."""

        _position = 0

        def seek(self, offset, whence=0):
            base = {0: 0, 1: self._position, 2: self.stream.size()}[whence]
            self._position = base + offset
            return self._position

        def tell(self):
            return self._position

        def read(self, size=-1):
            start = self._position
            end = self.stream.size()
            want = end - start if size is None or size < 0 else min(size, max(end - start, 0))
            parts, got = [], 0
            while got < want:  # a short answer is asked again for the rest, up to the end
                part = self.stream.read_at(want - got, start + got)
                if not part:
                    break
                parts.append(part)
                got += len(part)
            self._position = start + got
            return b"".join(parts)

        def readinto(self, buffer):
            data = self.read(len(memoryview(buffer)))
            memoryview(buffer)[:len(data)] = data
            return len(data)

    return S3ArrowFS(_s3())


def file_access_error(exc: BaseException) -> str | None:
    """The first line of a file or object-store access error (an OSError, or an engine's I/O error:
    they name paths and requests, not row values), for logs and reports; None for any other error."""
    if not (isinstance(exc, OSError) or type(exc).__name__ == "IOException"):
        return None
    first = (str(exc).strip().splitlines() or [""])[0]
    return first[:300] or type(exc).__name__


#: Pauses before each new attempt of an S3 lookup that failed (seconds; the SDK has retried already).
S3_RETRY_PAUSES = (0.5, 2.0, 5.0)


def _retried(call, path, *args, **kwargs):
    """`call(path, ...)`, attempted again after a pause when it fails with an OSError other than a
    missing file or a refused permission (those are answers, not failures)."""
    for pause in (*S3_RETRY_PAUSES, None):
        try:
            return call(path, *args, **kwargs)
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError):
            raise
        except OSError as exc:
            if pause is None:
                raise
            log.warning("S3 request on %s failed (%s: %s); trying again in %.1f s",
                        path, type(exc).__name__, file_access_error(exc), pause)
            time.sleep(pause)
