"""A minimal object store: a local directory or an S3 prefix, behind one small interface.

    store = open_store("/secure/vault")                                   # local directory
    store = open_store("s3://bucket/vault", s3_client=client, sse_kms_key_id=key_arn)
    store.write_bytes("versions/v000001.vault", blob)   store.read_bytes("CURRENT")
    store.exists(rel)   store.list("pending")   store.delete(rel)   store.uri(rel)

Names inside a store (`rel`) are relative, '/'-separated. Each write is complete or absent:
- local: a private file (mode 0600) written aside, fsynced, then renamed (or linked, `exclusive`)
  into place, and its directory fsynced (`write_private_file`);
- S3: one PutObject, atomic per object (a reader sees the old object or the new one, never a part);
  `exclusive` makes it conditional (`If-None-Match: *`). With `sse_kms_key_id`, every object is
  written with SSE-KMS under that key (`ServerSideEncryption="aws:kms"`), on top of whatever
  encryption the caller applied itself.

Errors are OSErrors naming the file or object: FileNotFoundError (no such object), FileExistsError
(an exclusive write found one), PermissionError (access denied), StoreError (anything else: the S3
error code, never its message).

boto3 and the amazon provider are imported only when an S3 store or client is asked for.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Protocol

from spark_jobs.uris import is_s3, split_s3


class StoreError(OSError):
    """An object store failure other than a missing object, an existing one or a refused access."""


class Store(Protocol):
    """What the vault (and other code) needs of a store; `LocalStore` and `S3Store` implement it."""

    kind: str
    root: str | Path

    def read_bytes(self, rel: str) -> bytes: ...
    def write_bytes(self, rel: str, data: bytes, *, exclusive: bool = False) -> None: ...
    def exists(self, rel: str) -> bool: ...
    def list(self, prefix_rel: str = "") -> list[str]: ...
    def delete(self, rel: str) -> None: ...
    def uri(self, rel: str = "") -> str: ...


def normalise_root(root) -> str | Path:
    """A store root: the canonical "s3://bucket/prefix" string for S3, a Path for a local directory
    (plain path or file:// URI). Other schemes are refused."""
    if is_s3(root):
        bucket, prefix = split_s3(root)
        return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    if isinstance(root, Path):
        return root
    s = str(root)
    if s.startswith("file://"):
        return Path(s[len("file://"):])
    if "://" in s:
        raise ValueError(f"{s}: only local paths, file:// and s3:// URIs are supported")
    return Path(s)


def write_private_file(path: Path, blob: bytes, exclusive: bool = False) -> None:
    """A secret file (mode 0600) written complete or not at all: written aside, fsynced, then linked
    into place (`exclusive`: an existing file is never overwritten, FileExistsError) or renamed over
    the old one; the directory is fsynced so that the rename survives a power loss."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        os.unlink(tmp)  # a stale one from a crash: never reuse its permissions
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():  # after a link (or a failed rename), the name aside goes
            os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _rel_parts(rel: str) -> list[str]:
    parts = [p for p in str(rel).split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"{rel!r}: not a name inside the store")
    return parts


class LocalStore:
    """A local directory; files are private (0600) and written atomically."""

    kind = "local"

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _path(self, rel: str) -> Path:
        return self.root.joinpath(*_rel_parts(rel))

    def uri(self, rel: str = "") -> str:
        return str(self._path(rel)) if rel else str(self.root)

    def read_bytes(self, rel: str) -> bytes:
        return self._path(rel).read_bytes()

    def write_bytes(self, rel: str, data: bytes, *, exclusive: bool = False) -> None:
        write_private_file(self._path(rel), data, exclusive=exclusive)

    def exists(self, rel: str) -> bool:
        return self._path(rel).is_file()

    def list(self, prefix_rel: str = "") -> list[str]:
        """Sorted names of the files directly under `prefix_rel` (a directory); [] when it is absent."""
        directory = self._path(prefix_rel) if prefix_rel else self.root
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))

    def delete(self, rel: str) -> None:
        self._path(rel).unlink()


class S3Store:
    """Objects under `s3://bucket/prefix`; with `sse_kms_key_id`, written with SSE-KMS under that key."""

    kind = "s3"

    def __init__(self, root: str, client, sse_kms_key_id: str | None = None):
        self.bucket, self.prefix = split_s3(root)
        self.root = normalise_root(root)
        self.client = client
        self.sse_kms_key_id = sse_kms_key_id

    def _key(self, rel: str) -> str:
        return "/".join([self.prefix, *_rel_parts(rel)] if self.prefix else _rel_parts(rel))

    def uri(self, rel: str = "") -> str:
        return f"s3://{self.bucket}/{self._key(rel)}" if rel else self.root

    def _call(self, op: str, rel: str, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "error"))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            where = self.uri(rel)
            if code in ("NoSuchKey", "NotFound", "404"):
                raise FileNotFoundError(errno.ENOENT, "no such object", where) from None
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412:
                raise FileExistsError(errno.EEXIST, "object already exists", where) from None
            if code in ("AccessDenied", "Forbidden", "403") or status == 403:
                raise PermissionError(errno.EACCES, f"S3 {op} refused ({code})", where) from None
            raise StoreError(errno.EIO, f"S3 {op} failed ({code})", where) from None
        except BotoCoreError as exc:
            raise StoreError(errno.EIO, f"S3 {op} failed ({type(exc).__name__})", self.uri(rel)) from None

    def read_bytes(self, rel: str) -> bytes:
        response = self._call("GetObject", rel, self.client.get_object, Bucket=self.bucket, Key=self._key(rel))
        with response["Body"] as body:
            return body.read()

    def write_bytes(self, rel: str, data: bytes, *, exclusive: bool = False) -> None:
        kwargs = {"Bucket": self.bucket, "Key": self._key(rel), "Body": bytes(data)}
        if self.sse_kms_key_id:
            kwargs.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=self.sse_kms_key_id)
        if exclusive:
            kwargs["IfNoneMatch"] = "*"
        self._call("PutObject", rel, self.client.put_object, **kwargs)

    def exists(self, rel: str) -> bool:
        try:
            self._call("HeadObject", rel, self.client.head_object, Bucket=self.bucket, Key=self._key(rel))
        except FileNotFoundError:
            return False
        return True

    def list(self, prefix_rel: str = "") -> list[str]:
        """Sorted names of the objects directly under `prefix_rel` (as if it were a directory)."""
        base = self._key(prefix_rel) if prefix_rel else self.prefix
        prefix = f"{base}/" if base else ""
        names: list[str] = []
        kwargs = {"Bucket": self.bucket, "Prefix": prefix, "Delimiter": "/"}
        while True:
            page = self._call("ListObjectsV2", prefix_rel, self.client.list_objects_v2, **kwargs)
            names += [o["Key"][len(prefix):] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                break
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
        return sorted(n for n in names if n)

    def delete(self, rel: str) -> None:
        self._call("DeleteObject", rel, self.client.delete_object, Bucket=self.bucket, Key=self._key(rel))


def s3_client(region_name: str | None, aws_conn_id: str | None = None):
    """An S3 client: through the amazon provider's hook when an Airflow connection is named (Airflow
    tasks: credentials, endpoint and region of the connection), else from the environment's
    credentials (EMR jobs run with their execution role). Mirrors keys.kms_client."""
    if aws_conn_id:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        return AwsBaseHook(aws_conn_id=aws_conn_id, client_type="s3", region_name=region_name).get_conn()
    import boto3

    return boto3.client("s3", region_name=region_name)


def aws_environment(aws_conn_id: str, region_name: str | None = None) -> dict[str, str]:
    """The AWS variables (credentials, region, endpoint) of an Airflow AWS connection: what a job
    subprocess and the lake's filesystem (`lakefs.configure_s3`) need to reach the region's S3."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    hook = AwsBaseHook(aws_conn_id=aws_conn_id, client_type="s3", region_name=region_name)
    creds = hook.get_credentials()
    env = {"AWS_ACCESS_KEY_ID": creds.access_key, "AWS_SECRET_ACCESS_KEY": creds.secret_key}
    if creds.token:
        env["AWS_SESSION_TOKEN"] = creds.token
    region = region_name or hook.conn_region_name
    if region:
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = region
    if hook.conn_config.endpoint_url:
        env["AWS_ENDPOINT_URL"] = hook.conn_config.endpoint_url
    return env


_default_s3_client = s3_client  # open_store's `s3_client` parameter shadows it


def open_store(root, *, s3_client=None, sse_kms_key_id: str | None = None) -> Store:
    """The store at `root`: a local directory, or an S3 prefix (client from the environment unless
    given; every object written with SSE-KMS under `sse_kms_key_id` when set)."""
    root = normalise_root(root)
    if isinstance(root, str):
        return S3Store(root, s3_client if s3_client is not None else _default_s3_client(None), sse_kms_key_id)
    return LocalStore(root)
