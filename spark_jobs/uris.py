"""Storage locations as strings: local paths, file:// and s3:// URIs, and the region's allowed roots.

A region may only touch its own storage (data sovereignty). Its allowed roots are its S3 buckets
(`s3://bucket/`) and, for local variants, its local directories. `check_within` is the one test every
layer applies: the region config when the DAGs are parsed, the preflight task at run time, and every
job on the URIs it is given (`--allowed-root`).
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path


class SovereigntyError(ValueError):
    """A location outside the region's allowed storage."""


S3_SCHEMES = ("s3://", "s3a://", "s3n://")  # s3a and s3n: Hadoop's spellings


def is_s3(uri) -> bool:
    return str(uri).startswith(S3_SCHEMES)


def split_s3(uri) -> tuple[str, str]:
    """(bucket, key prefix without leading, trailing or doubled '/') of an S3 URI."""
    s = str(uri)
    if not is_s3(s):
        raise ValueError(f"{s}: not an S3 URI (s3://bucket/prefix)")
    bucket, _, key = s.split("://", 1)[1].partition("/")
    if not bucket:
        raise ValueError(f"{s}: an S3 URI needs a bucket (s3://bucket/prefix)")
    return bucket, "/".join(part for part in key.split("/") if part)


def normalize(uri: str | Path, base: Path | None = None) -> str:
    """A canonical form: `s3://bucket/key` (no '..', no double slash) or an absolute local path
    (file:// stripped, relative paths resolved against `base`, '..' collapsed, symlinks not followed)."""
    uri = str(uri)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        key = posixpath.normpath("/" + key).lstrip("/") if key else ""
        return f"s3://{bucket}/{key}".rstrip("/") if key else f"s3://{bucket}"
    if "://" in uri and not uri.startswith("file://"):
        raise ValueError(f"unsupported location {uri!r}: local paths, file:// or s3:// only")
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    path = Path(uri)
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return os.path.normpath(str(path))


def join(root: str, *parts: str) -> str:
    """`root/part/...` for a local path or an s3:// URI."""
    return "/".join([str(root).rstrip("/"), *(str(p).strip("/") for p in parts)])


def is_within(uri: str, root: str) -> bool:
    """Whether normalized `uri` is `root` or below it (whole path components only)."""
    uri, root = normalize(uri), normalize(root)
    return uri == root or uri.startswith(root.rstrip("/") + "/")


def check_within(uri: str, roots: list[str] | tuple[str, ...], what: str = "location") -> str:
    """`uri` normalized, or SovereigntyError naming it and the allowed roots."""
    norm = normalize(uri)
    if not any(is_within(norm, r) for r in roots):
        raise SovereigntyError(
            f"{what} {uri!r} is outside the region's allowed storage ({', '.join(roots) or 'none'})")
    return norm
