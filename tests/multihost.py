"""The pieces of the multi-host tests: echo workers on namespace hosts, an aggregator process on
this host, a Tansu broker that keeps its log in S3 (moto on loopback) and can be restarted,
and what a batch's files, topics and worker reports say afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import orjson
from aiokafka import AIOKafkaConsumer

from llm_stream.broker.embedded import broker_binary
from llm_stream.network import free_port
from tests.netns import Host
from tests.processes import service_env

ARTIFACTS = Path(os.environ.get("LLM_STREAM_TEST_ARTIFACTS", ".cache/test-artifacts"))
#: ``make s3rver`` installs it.
S3RVER = Path(__file__).resolve().parent.parent / ".cache/s3rver/node_modules/.bin/s3rver"


def s3rver_binary() -> Path:
    if not S3RVER.exists():
        raise RuntimeError(f"{S3RVER} is missing: run `make s3rver`")
    return S3RVER


def settings_env(name: str, bootstrap: str, partitions: int, **extra: str) -> dict[str, str]:
    """The settings of one run (its own topics and groups), as a child's environment reads them."""
    return {
        "bootstrap_servers": bootstrap,
        "requests_topic": f"{name}.requests",
        "results_topic": f"{name}.results",
        "batches_topic": f"{name}.batches",
        "batch_status_topic": f"{name}.status",
        "dead_letter_topic": f"{name}.dead-letter",
        "workers_topic": f"{name}.workers",
        "webhook_failures_topic": f"{name}.webhook-failures",
        "worker_group_id": f"{name}.workers",
        "aggregator_group_id": f"{name}.aggregators",
        "topic_partitions": str(partitions),
        # 6 s: the smallest session timeout a default Apache Kafka accepts.
        "session_timeout_ms": "6000",
        "heartbeat_interval_ms": "1000",
        **extra,
    }


@dataclass
class Child:
    """A role's process; ``report`` is an echo worker's report file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    report: Path | None = None

    def state(self) -> dict[str, Any]:
        assert self.report is not None
        try:
            state: dict[str, Any] = json.loads(self.report.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"answered": [], "assignments": [], "exit_code": None}
        return state

    def answered(self) -> list[str]:
        answered: list[str] = self.state()["answered"]
        return answered

    def in_flight(self) -> int:
        return int(self.state().get("in_flight") or 0)

    def assignment(self) -> list[str]:
        assignments = self.state()["assignments"]
        return list(assignments[-1]["partitions"]) if assignments else []

    def stop(self, within: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(within)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@dataclass
class Roles:
    """Every process a test started, stopped at the end (the broker aside)."""

    directory: Path
    env: Mapping[str, str]
    children: list[Child] = field(default_factory=list)

    def worker(self, host: Host | str, latency_s: float, concurrency: int) -> Child:
        """An echo worker on a namespace host, or on this host under the name given."""
        name = host if isinstance(host, str) else f"worker-{host.namespace.rsplit('-', 1)[-1]}"
        report = self.directory / f"{name}.json"
        argv = [sys.executable, "-m", "llm_stream.bench.echo_worker", "--latency", str(latency_s)]
        argv += ["--concurrency", str(concurrency), "--report", str(report)]
        return self._start(name, argv if isinstance(host, str) else host.command(argv), report)

    def aggregator(self) -> Child:
        out = self.directory / "batches"
        return self._start(
            "aggregator",
            [sys.executable, "-m", "llm_stream", "aggregator", "--output-dir", str(out)],
        )

    def _start(self, name: str, argv: list[str], report: Path | None = None) -> Child:
        log = self.directory / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, env=service_env(self.env), stdout=out, stderr=subprocess.STDOUT
            )
        child = Child(name, process, log, report)
        self.children.append(child)
        return child

    def batch_dir(self, batch_id: str) -> Path:
        return self.directory / "batches" / batch_id


@contextmanager
def roles(directory: Path, env: Mapping[str, str]) -> Iterator[Roles]:
    directory.mkdir(parents=True, exist_ok=True)
    started = Roles(directory, env)
    try:
        yield started
    finally:
        for child in started.children:
            child.stop()


def wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.1)


def request_lines(count: int, batch: str) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"{batch}-{i}",
            "method": "POST",
            "url": "/v1/completions",
            "body": {"model": "echo", "prompt": f"{batch}-{i}", "max_tokens": 1},
        }
        for i in range(count)
    ]


def file_ids(batch_dir: Path) -> Counter[str]:
    """How often each custom_id is in the batch's output and error files."""
    ids: Counter[str] = Counter()
    for name in ("output.jsonl", "error.jsonl"):
        path = batch_dir / name
        if path.exists():
            ids.update(orjson.loads(line)["custom_id"] for line in path.read_bytes().splitlines())
    return ids


async def read_topic(
    bootstrap: str, topic: str, *, quiet: float = 2.0, within: float = 30
) -> list[Any]:
    """Every record of ``topic``, as ``(value or None, timestamp_ms)``: read until nothing new
    comes for ``quiet`` seconds (the embedded broker's end offsets can under-report)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + within
        last_new = time.monotonic()
        while time.monotonic() - last_new < quiet and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=300)
            got = [
                (orjson.loads(r.value) if r.value else None, r.timestamp)
                for rs in fetched.values()
                for r in rs
            ]
            if got:
                records += got
                last_new = time.monotonic()
        return records
    finally:
        await consumer.stop()


class TansuOnS3:
    """Tansu keeping its log in S3 on loopback: a broker that can be stopped and started again
    on the same address with what it had written. The S3 server is moto's, or ``s3rver`` (the
    npm package, ``make s3rver``) where given: on s3rver, a Tansu killed with SIGKILL comes back
    from a stale watermark and loses acknowledged writes (../shared/FACTS.md), as a broker that
    loses data does; on moto it keeps them."""

    def __init__(self, host: str, directory: Path, *, s3rver: Path | None = None) -> None:
        self.host, self.port = host, free_port(host)
        self.directory = directory
        self.s3rver = s3rver
        self.s3_port = free_port()
        self.s3: subprocess.Popen[bytes] | None = None
        self.broker: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def __enter__(self) -> TansuOnS3:
        if self.s3rver is None:
            command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1"]
        else:
            (self.directory / "s3").mkdir(parents=True, exist_ok=True)
            command = [str(self.s3rver), "-d", str(self.directory / "s3"), "-a", "127.0.0.1"]
            command += ["--configure-bucket", "tansu", "--allow-mismatched-signatures"]
        command += ["-p", str(self.s3_port)]
        self.s3 = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _answers("127.0.0.1", self.s3_port), 30, "the S3 server")
        if self.s3rver is None:
            endpoint = f"http://127.0.0.1:{self.s3_port}"
            s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **_KEYS)
            s3.create_bucket(Bucket="tansu")
        self.start()
        return self

    def start(self) -> None:
        url = f"tcp://{self.host}:{self.port}"
        command = [
            str(broker_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
        ]
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "S3RVER" if self.s3rver else _KEYS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": "S3RVER" if self.s3rver else _KEYS["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": f"http://127.0.0.1:{self.s3_port}",
            "AWS_ALLOW_HTTP": "true",
            "RUST_LOG": "warn",
        }
        self.starts += 1
        with (self.directory / f"tansu-{self.starts}.log").open("wb") as log:
            self.broker = subprocess.Popen(
                [*command, "--storage-engine", "s3://tansu/"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(lambda: _answers(self.host, self.port), 15, "Tansu on S3")

    def kill(self) -> None:
        """SIGKILL: the broker gets no chance to write what it holds."""
        if self.broker is not None and self.broker.poll() is None:
            self.broker.kill()
            self.broker.wait(15)

    def stop(self) -> None:
        """SIGTERM, as an orchestrator stops a broker."""
        if self.broker is not None and self.broker.poll() is None:
            self.broker.terminate()
            self.broker.wait(15)

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self.s3 is not None:
            self.s3.terminate()
            self.s3.wait(10)


_KEYS = {"aws_access_key_id": "tansu-test", "aws_secret_access_key": "tansu-test"}


def _answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.2).close()
        return True
    except OSError:
        return False


def write_artifact(name: str, figures: Any) -> Path:
    path = ARTIFACTS / "multihost" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=1))
    return path
