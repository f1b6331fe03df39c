"""Measure an aggregator started on a short and a long history of finished batches: how long
until it writes a new batch, and its peak memory, each history read by a fresh process.

    PYTHONPATH=service python -m tests.measure_aggregator_history [--batches 100 100000]

History is what a restarted aggregator finds: every batch's manifest on the batches topic, its
final object on the batch-status topic, and its batch object (the marker) in the store. The
clock runs from the process's start to the new batch's batch object, published once the process
is up (so the time includes reading the history). On the embedded broker. Not a test: it prints
figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.contracts import BatchManifest, ResponseData, ResultMessage
from llm_stream.files.store import BatchFile, LocalFileStore
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from tests.kafka_harness import kafka_bootstrap_servers
from tests.processes import running


async def _publish_history(settings: Settings, store: LocalFileStore, batches: int) -> None:
    os.fsync = lambda _descriptor: None  # this process only: the layout does not change
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        futures = []
        ended_at = int(time.time()) - 3600
        for number in range(batches):
            batch_id = f"done_{number:07d}"
            manifest = BatchManifest(batch_id=batch_id, endpoint="/v1/completions", request_count=1)
            final = batch_object(
                manifest, BatchStatus.COMPLETED, reached_at={BatchStatus.COMPLETED: ended_at}
            )
            key = batch_id.encode()
            futures.append(
                await producer.send(
                    settings.batches_topic, manifest.model_dump_json().encode(), key=key
                )
            )
            futures.append(
                await producer.send(
                    settings.batch_status_topic, final.model_dump_json().encode(), key=key
                )
            )
            store.write(batch_id, BatchFile.BATCH, [final.model_dump_json().encode() + b"\n"])
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _publish_new_batch(settings: Settings) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        manifest = BatchManifest(batch_id="fresh", endpoint="/v1/completions", request_count=3)
        await producer.send_and_wait(
            settings.batches_topic, manifest.model_dump_json().encode(), key=b"fresh"
        )
        for number in range(3):
            result = ResultMessage(
                batch_id="fresh",
                id=f"r{number}",
                custom_id=f"c{number}",
                response=ResponseData(status_code=200, request_id="r", body={}),
            )
            await producer.send_and_wait(
                settings.results_topic, result.model_dump_json().encode(), key=b"fresh"
            )
    finally:
        await producer.stop()


def _rss_mb(pid: int, field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _measure(bootstrap: str, batches: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as directory:
        name = f"history{batches}_{int(time.time())}"
        settings = Settings(
            bootstrap_servers=bootstrap,
            requests_topic=f"{name}.requests",
            results_topic=f"{name}.results",
            batches_topic=f"{name}.batches",
            batch_status_topic=f"{name}.status",
            dead_letter_topic=f"{name}.dead",
            aggregator_group_id=f"{name}.aggregators",
            output_dir=Path(directory) / "batches",
        )
        await ensure_topics(settings)
        store = LocalFileStore(settings.output_dir)
        store.index.mark_built()  # a store the index has always been kept in
        await _publish_history(settings, store, batches)
        env = {
            "bootstrap_servers": bootstrap,
            "results_topic": settings.results_topic,
            "requests_topic": settings.requests_topic,
            "batches_topic": settings.batches_topic,
            "batch_status_topic": settings.batch_status_topic,
            "dead_letter_topic": settings.dead_letter_topic,
            "aggregator_group_id": settings.aggregator_group_id,
            "output_dir": str(settings.output_dir),
            "spool_dir": str(Path(directory) / "spool"),
        }
        started = time.monotonic()
        with running(["aggregator"], env, Path(directory) / "aggregator.log") as process:
            await _publish_new_batch(settings)
            while not store.is_written("fresh"):
                if process.poll() is not None:
                    raise SystemExit((Path(directory) / "aggregator.log").read_text()[-3000:])
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - started
            await asyncio.sleep(2)  # the manifests and statuses read to their end
            return elapsed, _rss_mb(process.pid, "VmRSS"), _rss_mb(process.pid, "VmHWM")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[100, 100_000])
    args = parser.parse_args()
    with kafka_bootstrap_servers() as (bootstrap, kind):
        print(f"broker: {kind}")
        results = {}
        for batches in args.batches:
            results[batches] = await _measure(bootstrap, batches)
            elapsed, rss, peak = results[batches]
            print(
                f"{batches:>8} batches: new batch written after {elapsed:6.2f} s, "
                f"RSS {rss:6.1f} MB (peak {peak:6.1f} MB)"
            )
        small, large = results[min(results)], results[max(results)]
        print(
            f"ratio (largest / smallest history): time {large[0] / small[0]:.2f}, "
            f"RSS {large[1] / small[1]:.3f}, peak RSS {large[2] / small[2]:.3f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
