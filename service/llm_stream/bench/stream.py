"""What the stream itself costs, with no model: the engine-free parts of ``llm-stream bench``.

The engine is the library's echo engine and the broker the embedded one (or
``--bootstrap-servers``), so what is timed is ours: fetching, decoding, validating, serialising,
publishing, committing and aggregating. Three figures, each side repeated (median and spread):

- worker overhead per message (microseconds): pre-published requests, one in-process worker;
  the clock runs from the worker owning its partitions to the last result, so the group join
  is not counted;
- aggregator throughput (result lines/s): pre-published results of one batch, one aggregator;
  the clock runs from the first line spooled to the batch file written;
- peak RSS of a worker and of an aggregator process for a small and a large batch: memory must
  not grow with batch size.
"""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from llm_stream.aggregator.app import AggregatorApp
from llm_stream.bench.support import STREAM_PARTS, Spread, broker
from llm_stream.contracts import BatchManifest, ResponseData, ResultMessage
from llm_stream.engine.echo import EchoEngine
from llm_stream.kafka.connection import client_kwargs
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from llm_stream.worker.app import WorkerApp

_TIMEOUT_S = 600.0


def _settings(bootstrap: str, output_dir: Path) -> Settings:
    run = f"bench-stream-{uuid.uuid4().hex[:8]}"
    names = ("requests", "results", "batches", "batch_status", "dead_letter")
    fields = {f"{name}_topic": f"{run}.{name}" for name in names}
    return Settings.model_validate(
        {
            **fields,
            "bootstrap_servers": bootstrap,
            "worker_group_id": f"{run}.workers",
            "aggregator_group_id": f"{run}.aggregators",
            "output_dir": output_dir,
            "topic_partitions": 4,
        }
    )


def request_line(batch_id: str, index: int) -> bytes:
    body = {"model": "echo", "prompt": f"request {index}", "max_tokens": 1}
    line = {"batch_id": batch_id, "custom_id": f"c{index}", "url": "/v1/completions"}
    return orjson.dumps({**line, "method": "POST", "body": body})


def result_line(batch_id: str, index: int) -> bytes:
    body = {"choices": [{"index": 0, "text": f"answer {index}"}], "usage": {"prompt_tokens": 3}}
    response = ResponseData(status_code=200, request_id=f"r{index}", body=body)
    result = ResultMessage(
        batch_id=batch_id, id=f"batch_req_{index}", custom_id=f"c{index}", response=response
    )
    return orjson.dumps(result.model_dump(mode="json"))


async def _publish(
    settings: Settings,
    topic: str,
    values: Iterator[bytes],
    key: bytes,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    producer = AIOKafkaProducer(**client_kwargs(settings), linger_ms=20)
    await producer.start()
    try:
        window = []
        for value in values:
            window.append(await producer.send(topic, value, key=key, headers=headers))
            if len(window) >= 2000:
                await asyncio.gather(*window)
                window.clear()
        await asyncio.gather(*window)
    finally:
        await producer.stop()


async def _run_role(
    role: WorkerApp | AggregatorApp, until: Callable[[], Awaitable[float]]
) -> float:
    running = asyncio.create_task(role.run())
    try:
        return await asyncio.wait_for(until(), _TIMEOUT_S)
    finally:
        role.stopping.set()
        await asyncio.wait_for(running, 60)


async def _requests_published(bootstrap: str, messages: int, workdir: Path) -> Settings:
    """Fresh topics holding ``messages`` request lines of one batch."""
    settings = _settings(bootstrap, workdir / "batches")
    await ensure_topics(settings)
    batch_id = f"overhead-{uuid.uuid4().hex[:8]}"
    lines = (request_line(batch_id, i) for i in range(messages))
    await _publish(settings, settings.requests_topic, lines, b"")
    return settings


async def _worker_answering(settings: Settings, messages: int) -> float:
    """Microseconds per message for a worker (echo engine) answering the published requests."""
    worker = WorkerApp(settings.with_overrides(max_in_flight=512), EchoEngine(concurrency=256))

    async def answered() -> float:
        consumer = AIOKafkaConsumer(
            settings.results_topic,
            **client_kwargs(settings),
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=settings.fetch_partition_bytes,
        )
        await consumer.start()
        try:
            # The clock starts when the worker owns its partitions: its first fetch follows.
            while not worker.consumer.assignment():  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            started, seen = time.perf_counter(), 0
            while seen < messages:
                fetched = await consumer.getmany(timeout_ms=200, max_records=1000)
                seen += sum(len(records) for records in fetched.values())
            return (time.perf_counter() - started) / messages * 1e6
        finally:
            await consumer.stop()

    return await _run_role(worker, answered)


async def worker_overhead_us(bootstrap: str, messages: int, workdir: Path) -> float:
    """Seconds per message between the first and the last result, in microseconds."""
    settings = await _requests_published(bootstrap, messages, workdir)
    return await _worker_answering(settings, messages)


async def _results_published(bootstrap: str, lines: int, workdir: Path) -> Settings:
    """Fresh topics holding one batch's manifest and ``lines`` results."""
    settings = _settings(bootstrap, workdir / "batches")
    await ensure_topics(settings)
    batch_id = f"aggregate-{uuid.uuid4().hex[:8]}"
    manifest = BatchManifest(batch_id=batch_id, endpoint="/v1/completions", request_count=lines)
    key = batch_id.encode()
    await _publish(
        settings, settings.batches_topic, iter([manifest.model_dump_json().encode()]), key
    )
    results = (result_line(batch_id, i) for i in range(lines))
    await _publish(settings, settings.results_topic, results, key)
    return settings


async def _aggregator_writing(settings: Settings, lines: int) -> float:
    """Lines per second for an aggregator writing the one published batch."""
    app = AggregatorApp(settings)

    async def written() -> float:
        # Polled: the aggregator has no event to wait on, and 1 ms is far below the run.
        while not app.aggregator.batches_written and not app.aggregator.open_batches:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        started = time.perf_counter()
        # An in-memory counter (this app writes only this batch): polling ``is_finished``,
        # which stats the file store, took ~10% of the aggregator's CPU in the window.
        while not app.aggregator.batches_written:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        return lines / (time.perf_counter() - started)

    return await _run_role(app, written)


async def aggregator_lines_per_s(bootstrap: str, lines: int, workdir: Path) -> float:
    """Result lines per second from the first one spooled to the batch's files written."""
    settings = await _results_published(bootstrap, lines, workdir)
    return await _aggregator_writing(settings, lines)


def peak_rss_mb(role: str, lines: int, bootstrap: str, workdir: Path) -> float:
    """Peak RSS of a child process that runs only ``role`` over a batch of ``lines``: this
    process publishes them first, so the producer's memory is not counted."""
    publish = _requests_published if role == "worker" else _results_published
    settings = asyncio.run(publish(bootstrap, lines, workdir))
    done = subprocess.run(
        [sys.executable, "-m", "llm_stream.bench.stream", role, str(lines)],
        input=settings.model_dump_json(),
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def own_peak_rss_mb() -> float:
    """This process's peak RSS in MB: Linux's ``VmHWM``, where ``ru_maxrss`` would also count the
    parent's RSS at fork (a small child of a large parent reads as large)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # not Linux: ru_maxrss (KiB on Linux and BSD, bytes on macOS)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (
        next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
        / 1024
    )


def _child(role: str, lines: int) -> None:
    """Run one role over the batch published on the topics of the settings on stdin; print
    this process's peak RSS in MB."""
    settings = Settings.model_validate_json(sys.stdin.read())
    measure = _worker_answering if role == "worker" else _aggregator_writing
    asyncio.run(measure(settings, lines))
    print(own_peak_rss_mb())


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]))


#: The figures this module measures, as ``llm-stream bench --only`` names them.
PARTS = STREAM_PARTS


def run(
    *,
    bootstrap: str | None = None,
    repeat: int = 3,
    messages: int = 5000,
    lines: int = 100_000,
    rss_small: int = 1000,
    rss_large: int = 100_000,
    parts: Collection[str] = PARTS,
) -> dict[str, object]:
    """The figures of ``parts``, each side ``repeat`` times, under ``llm-stream bench``'s keys."""
    figures: dict[str, object] = {}
    with broker(bootstrap) as servers, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if "overhead" in parts:
            overhead = Spread.of(
                [asyncio.run(worker_overhead_us(servers, messages, workdir)) for _ in range(repeat)]
            )
            figures["overhead_us_per_msg"] = round(overhead.median, 1)
            figures["overhead_us_per_msg_range"] = [round(overhead.low, 1), round(overhead.high, 1)]
        if "aggregator" in parts:
            aggregator = Spread.of(
                [
                    asyncio.run(aggregator_lines_per_s(servers, lines, workdir))
                    for _ in range(repeat)
                ]
            )
            figures["aggregator_lines_s"] = round(aggregator.median)
            figures["aggregator_lines_s_range"] = [round(aggregator.low), round(aggregator.high)]
        if "rss" in parts:
            rss = {
                (role, size): peak_rss_mb(role, size, servers, workdir)
                for role in ("worker", "aggregator")
                for size in (rss_small, rss_large)
            }
            small = max(rss[(role, rss_small)] for role in ("worker", "aggregator"))
            large = max(rss[(role, rss_large)] for role in ("worker", "aggregator"))
            figures["rss_1k_mb"], figures["rss_100k_mb"] = round(small, 1), round(large, 1)
            growth = max(
                rss[(r, rss_large)] / rss[(r, rss_small)] for r in ("worker", "aggregator")
            )
            figures["rss_100k_vs_1k"] = round(growth, 3)  # the role that grew most
            figures["rss_mb"] = {f"{role} {size}": round(mb, 1) for (role, size), mb in rss.items()}
    return figures
