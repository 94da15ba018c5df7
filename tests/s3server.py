"""A local S3 server for the tests (moto's server mode, on a free loopback port; never the internet).

One server per test session. moto's in-process servers share one state, so each test creates buckets
of its own (`new_bucket`). `s3_env` points boto3 and pyarrow (the lake's filesystem) at it through the
standard AWS variables, as the AWS configuration of a job's environment would.
"""

from __future__ import annotations

import socket
import uuid

import pytest

S3_REGION = "eu-west-3"
S3_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """The endpoint URL of the session's local S3 server."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def s3_client(endpoint: str, service: str = "s3", region: str = S3_REGION):
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name=region, **S3_CREDENTIALS)


def new_bucket(client, prefix: str, region: str = S3_REGION) -> str:
    """A bucket of the calling test's own (moto's state is shared by the session)."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    return name


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """The AWS environment variables pointing at the local server (what boto3, pyarrow and the jobs
    read); the lake's cached S3 filesystem is rebuilt from them."""
    from spark_jobs import lakefs

    for name, value in {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "test",
                        "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": S3_REGION,
                        "AWS_DEFAULT_REGION": S3_REGION}.items():
        monkeypatch.setenv(name, value)
    lakefs._s3.cache_clear()
    yield s3_server
    lakefs._s3.cache_clear()
