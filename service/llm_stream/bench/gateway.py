"""Reads from the gateway against the history behind it: ``python -m llm_stream.bench.gateway``.

A real gateway process (``llm-stream gateway``) on the embedded broker (or
``--bootstrap-servers``), its topics holding a small and a large history of finished batches,
published directly (a manifest and a ``completed`` batch object each). For each history: the
gateway's start-up until ``/readyz`` answers, its RSS, ``GET /v1/batches/{id}`` and
``GET /v1/batches?limit=20`` latency at one connection (p50, p99) and requests per second at
many connections; then each large/small ratio. What the gateway must hold is open work, not
history: the ratios say whether it does.

The gateways run side by side and are measured in rounds, each round in the reverse order of
the one before (medians reported), so drift in a shared machine's speed falls on all alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import httpx
import orjson
import psutil
from aiokafka import AIOKafkaProducer

from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.bench.gateway_load import Latency, Rate, latency, rate
from llm_stream.bench.support import broker, say
from llm_stream.client.manifests import build_manifest
from llm_stream.contracts import BatchUsage
from llm_stream.kafka.topics import ensure_topics
from llm_stream.network import free_port
from llm_stream.settings import Settings

#: Sends awaited together while the history is published.
_WINDOW = 5000
_START_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Round:
    """One round's figures of one gateway."""

    retrieve: Latency
    listing: Latency
    retrieve_rate: Rate
    list_rate: Rate


@dataclass
class Figures:
    """One history's gateway: its start-up, its RSS after every round, and each round."""

    batches: int
    start_s: float
    rss_mb: float = 0.0
    rounds: list[Round] = field(default_factory=list)

    def median(self, figure: Callable[[Round], float]) -> float:
        return statistics.median(figure(one) for one in self.rounds)


def _settings(bootstrap: str, partitions: int) -> Settings:
    run = f"bench-gateway-{uuid.uuid4().hex[:8]}"
    names = ("requests", "results", "batches", "batch_status", "dead_letter")
    fields = {f"{name}_topic": f"{run}.{name}" for name in names}
    return Settings.model_validate(
        {**fields, "bootstrap_servers": bootstrap, "topic_partitions": partitions}
    )


def _finished(index: int, created_at: int) -> tuple[str, bytes, bytes]:
    """A batch's id, manifest and final object, as a week of real traffic would leave them."""
    batch_id = f"batch_bench{index:08d}"
    manifest = build_manifest(
        batch_id,
        endpoint="/v1/chat/completions",
        request_count=1000,
        metadata={"team": "search", "run": f"nightly-{index % 97}"},
        model="tiny",
    ).model_copy(update={"created_at": created_at})
    done = batch_object(
        manifest,
        BatchStatus.COMPLETED,
        completed=990,
        failed=10,
        reached_at={
            BatchStatus.IN_PROGRESS: created_at + 1,
            BatchStatus.FINALIZING: created_at + 600,
            BatchStatus.COMPLETED: created_at + 601,
        },
        output_file_id=f"file-{batch_id}-output",
        error_file_id=f"file-{batch_id}-error",
        usage=BatchUsage(input_tokens=51_000, output_tokens=64_000, total_tokens=115_000),
    )
    return (
        batch_id,
        orjson.dumps(manifest.model_dump(mode="json", exclude_none=True)),
        orjson.dumps(done.model_dump(mode="json")),
    )


async def publish_history(settings: Settings, count: int) -> str:
    """``count`` finished batches on the batches and status topics; one id from the middle."""
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    middle = ""
    try:
        start = int(time.time()) - count
        pending = []
        for index in range(count):
            batch_id, manifest, final = _finished(index, start + index)
            middle = batch_id if index == count // 2 else middle
            key = batch_id.encode()
            pending.append(await producer.send(settings.batches_topic, manifest, key=key))
            pending.append(await producer.send(settings.batch_status_topic, final, key=key))
            if len(pending) >= _WINDOW:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return middle


@contextmanager
def gateway_process(settings: Settings, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``llm-stream gateway`` on loopback for the block, with a private output directory."""
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as output_dir:
        env = {
            **os.environ,
            "LLM_STREAM_BATCHES_TOPIC": settings.batches_topic,
            "LLM_STREAM_BATCH_STATUS_TOPIC": settings.batch_status_topic,
            "LLM_STREAM_REQUESTS_TOPIC": settings.requests_topic,
            "LLM_STREAM_RESULTS_TOPIC": settings.results_topic,
            "LLM_STREAM_DEAD_LETTER_TOPIC": settings.dead_letter_topic,
            "LLM_STREAM_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "LLM_STREAM_LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "llm_stream", "gateway"]
        command += ["--bootstrap-servers", settings.bootstrap_servers, "--port", str(port)]
        command += ["--host", "127.0.0.1", "--output-dir", output_dir]
        process = subprocess.Popen(command, env=env)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _until_ready(base: str, process: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() - started < _START_TIMEOUT_S:
            if process.poll() is not None:
                raise RuntimeError(f"the gateway exited with {process.returncode}")
            try:
                if (await client.get(f"{base}/readyz")).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("the gateway did not become ready")


@dataclass(frozen=True)
class Target:
    """A gateway under test: its process, what to retrieve, and its figures so far."""

    process: subprocess.Popen[bytes]
    base: str
    batch_id: str
    figures: Figures


async def start_gateway(stack: ExitStack, bootstrap: str, batches: int, partitions: int) -> Target:
    """A history of ``batches`` on fresh topics, and a gateway process ready in front of it."""
    settings = _settings(bootstrap, partitions)
    say(f"publishing {batches} finished batches")
    batch_id = await publish_history(settings, batches)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = stack.enter_context(gateway_process(settings, port))
    start_s = await _until_ready(base, process)
    say(f"{batches} batches: ready in {start_s:.1f} s")
    return Target(process, base, batch_id, Figures(batches, start_s))


async def measure_round(target: Target, *, seconds: float, connections: int) -> None:
    one = f"{target.base}/v1/batches/{target.batch_id}"
    page = f"{target.base}/v1/batches?limit=20"
    measured = Round(
        retrieve=await latency(one, count=2000, seconds=seconds),
        listing=await latency(page, count=1000, seconds=seconds),
        retrieve_rate=await rate(one, connections=connections, seconds=seconds),
        list_rate=await rate(page, connections=connections, seconds=seconds),
    )
    target.figures.rounds.append(measured)
    target.figures.rss_mb = psutil.Process(target.process.pid).memory_info().rss / 2**20


async def run(
    bootstrap: str,
    histories: Sequence[int],
    *,
    partitions: int,
    rounds: int,
    seconds: float,
    connections: int,
) -> list[Figures]:
    """Every gateway started (one after the other), then measured in rounds, each round in
    the reverse order of the one before: drift in a shared machine's speed falls on all."""
    with ExitStack() as stack:
        targets = [
            await start_gateway(stack, bootstrap, batches, partitions) for batches in histories
        ]
        for number in range(rounds):
            say(f"round {number + 1} of {rounds}")
            for target in targets if number % 2 == 0 else reversed(targets):
                await measure_round(target, seconds=seconds, connections=connections)
        return [target.figures for target in targets]


_ROWS: tuple[tuple[str, Callable[[Round], float]], ...] = (
    ("retrieve p50, 1 connection (ms)", lambda r: r.retrieve.p50_ms),
    ("retrieve p99, 1 connection (ms)", lambda r: r.retrieve.p99_ms),
    ("list limit=20 p50, 1 connection (ms)", lambda r: r.listing.p50_ms),
    ("list limit=20 p99, 1 connection (ms)", lambda r: r.listing.p99_ms),
    ("retrieve req/s, many connections", lambda r: r.retrieve_rate.per_second),
    ("list limit=20 req/s, many connections", lambda r: r.list_rate.per_second),
)


def format_figures(figures: Sequence[Figures]) -> str:
    """One column per history (medians of the rounds), then largest / smallest."""
    rows = [
        ("start-up until ready (s)", [f.start_s for f in figures]),
        ("gateway RSS after the rounds (MB)", [f.rss_mb for f in figures]),
    ]
    rows += [(name, [f.median(figure) for f in figures]) for name, figure in _ROWS]
    header = f"{'batches of history':40}" + "".join(f"{f.batches:>12,}" for f in figures)
    lines = [header + f"{'ratio':>10}"]
    for name, values in rows:
        ratio = values[-1] / values[0] if values[0] else float("nan")
        cells = "".join(f"{value:>12,.2f}" for value in values)
        lines.append(f"{name:40}{cells}{ratio:>10.2f}")
    sample = figures[0].rounds[0]
    lines.append(
        f"medians of {len(figures[0].rounds)} rounds; req/s at "
        f"{sample.retrieve_rate.connections} connections, measured with {sample.retrieve_rate.tool}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_stream.bench.gateway")
    parser.add_argument("--batches", type=int, nargs="+", default=[100, 100_000])
    parser.add_argument("--bootstrap-servers", default=None)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement, at most")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args(argv)
    with broker(args.bootstrap_servers) as bootstrap:
        figures = asyncio.run(
            run(
                bootstrap,
                args.batches,
                partitions=args.partitions,
                rounds=args.rounds,
                seconds=args.seconds,
                connections=args.connections,
            )
        )
    print(format_figures(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
