"""A real S3 server on loopback for the object-storage tests: moto's server mode, in its own
process, so that memory measured in the test process is the client's alone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest

from llm_stream.network import free_port

#: What the AWS provider chain finds in the environment: moto accepts any key.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,  # no profile of the machine's user gets in
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@contextmanager
def s3_server(within: float = 60) -> Iterator[str]:
    """The endpoint URL of a moto S3 server, with the AWS environment that reaches it set."""
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + within
        while True:
            assert server.poll() is None, f"moto server exited with {server.returncode}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto server did not start"
                time.sleep(0.1)
        with pytest.MonkeyPatch.context() as patch:
            for name, value in AWS_ENV.items():
                patch.setenv(name, value)
            yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


def s3_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def new_bucket(endpoint: str) -> str:
    """A bucket no other test uses."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    s3_client(endpoint).create_bucket(Bucket=name)
    return name
