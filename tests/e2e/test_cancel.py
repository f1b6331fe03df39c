"""Cancelling a long batch half way through a real worker process on vLLM: it ends
``cancelled``, and the engine goes idle soon after the cancel is published (the time is
printed: the cancel's latency, from Kafka to vLLM's abort)."""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_stream.aggregator.app import AggregatorApp
from llm_stream.batch.status import BatchStatus
from llm_stream.client import BatchClient
from llm_stream.kafka.topics import ensure_topics
from llm_stream.network import free_port
from llm_stream.settings import Settings
from tests.processes import SERVED_MODEL, running, worker_args

pytestmark = [pytest.mark.engine, pytest.mark.broker]

REQUESTS = 300
MAX_TOKENS = 200
#: Requests vLLM runs at once: the batch takes many rounds, so half way is a moment in time.
MAX_NUM_SEQS = 32
BATCH = "long"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except OSError:
        return 0, ""


def _engine_load(metrics_url: str) -> dict[str, float]:
    """The worker's requests in flight and answered, vLLM's requests running or waiting, and
    the requests the worker aborted in the engine for a cancel. A scrape that fails (a busy
    worker answering late) is asked again, never read as an idle engine."""
    for _ in range(10):
        status, text = _get(metrics_url)
        if status == 200:
            break
    else:
        raise AssertionError(f"{metrics_url} did not answer 200 in 10 tries")
    load = {"in_flight": 0.0, "answered": 0.0, "in_engine": 0.0, "aborted": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "llm_stream_requests_in_flight":
                load["in_flight"] += sample.value
            elif sample.name == "llm_stream_requests_answered_total":
                load["answered"] += sample.value
            elif sample.name in ("vllm:num_requests_running", "vllm:num_requests_waiting"):
                load["in_engine"] += sample.value
            elif (
                sample.name == "llm_stream_requests_cancelled_total"
                and sample.labels.get("stage") == "running"
            ):
                load["aborted"] += sample.value
    return load


async def _until(condition: str, check: Callable[[], bool], within: float) -> None:
    started = time.monotonic()
    while not await asyncio.to_thread(check):
        assert time.monotonic() - started < within, f"{condition} not within {within} s"
        await asyncio.sleep(0.2)


async def _half_way_with_work_in_the_worker(
    metrics_url: str, worker: subprocess.Popen[bytes], log: Path
) -> dict[str, float]:
    """The worker's load at the first scrape where it has answered half the batch and still
    holds requests: the moment to cancel. Both come from one scrape of the worker itself (an
    aggregator's count lags, and the worker may briefly hold nothing between two fetches); a
    batch that ends before such a scrape fails here rather than waiting on an idle worker."""
    started = time.monotonic()
    while True:
        assert worker.poll() is None, log.read_text()[-3000:]
        load = await asyncio.to_thread(_engine_load, metrics_url)
        if load["answered"] >= REQUESTS:
            raise AssertionError(f"the batch ended before a cancel could find work: {load}")
        if load["answered"] >= REQUESTS // 2 and load["in_flight"] > 0:
            return load
        assert time.monotonic() - started < 600, f"the batch never got half way: {load}"
        await asyncio.sleep(0.02)


async def _time_to_idle(metrics_url: str, within: float) -> tuple[float | None, float | None]:
    """Seconds until the worker holds no request, and until vLLM runs or queues none (None:
    not within ``within``), polled every 50 ms."""
    started = time.monotonic()
    worker_idle: float | None = None
    engine_idle: float | None = None
    while time.monotonic() - started < within and (worker_idle is None or engine_idle is None):
        load = await asyncio.to_thread(_engine_load, metrics_url)
        elapsed = time.monotonic() - started
        if worker_idle is None and load["in_flight"] == 0:
            worker_idle = elapsed
        if engine_idle is None and load["in_engine"] == 0:
            engine_idle = elapsed
        await asyncio.sleep(0.05)
    return worker_idle, engine_idle


async def test_a_long_batch_cancelled_half_way_ends_cancelled_and_the_engine_goes_idle(
    isolated_settings: Settings, tiny_model: str, tmp_path: Path
) -> None:
    settings = isolated_settings.with_overrides(topic_partitions=2)
    await ensure_topics(settings)
    ops_port = free_port()
    environment = {
        "bootstrap_servers": settings.bootstrap_servers,
        "requests_topic": settings.requests_topic,
        "results_topic": settings.results_topic,
        "batches_topic": settings.batches_topic,
        "batch_status_topic": settings.batch_status_topic,
        "dead_letter_topic": settings.dead_letter_topic,
        "worker_group_id": settings.worker_group_id,
        "ops_host": "127.0.0.1",
        "ops_port": str(ops_port),
    }
    ops = f"http://127.0.0.1:{ops_port}"
    metrics = f"{ops}/metrics"
    args = [*worker_args(tiny_model), "--max-num-seqs", str(MAX_NUM_SEQS)]
    log = tmp_path / "worker.log"
    aggregator = AggregatorApp(settings)
    aggregating = asyncio.create_task(aggregator.run())
    try:
        with running(args, environment, log) as worker:
            await _until("worker ready", lambda: _get(f"{ops}/readyz")[0] == 200, 600)
            assert worker.poll() is None, log.read_text()[-3000:]
            body = {"model": SERVED_MODEL, "max_tokens": MAX_TOKENS, "temperature": 0}
            lines = [
                {
                    "custom_id": f"c{i}",
                    "url": "/v1/completions",
                    "body": {**body, "prompt": f"Item {i}:", "ignore_eos": True},
                }
                for i in range(REQUESTS)
            ]
            async with BatchClient.from_settings(settings) as client:
                handle = await client.submit(lines, batch_id=BATCH, endpoint="/v1/completions")
                started = time.monotonic()
                at_cancel = await _half_way_with_work_in_the_worker(metrics, worker, log)
                half_way = time.monotonic() - started
                asking = time.monotonic()
                asked = await handle.cancel()
                published = time.monotonic()  # the broker holds the cancelling object
                assert asked is not None
                assert asked.status is BatchStatus.CANCELLING
                worker_idle, engine_idle = await _time_to_idle(metrics, within=60)
                after = await asyncio.to_thread(_engine_load, metrics)
                final = await handle.wait(timeout=120)
            assert worker.poll() is None, log.read_text()[-3000:]
    finally:
        aggregator.stopping.set()
        await asyncio.wait_for(aggregating, 60)

    assert final is not None
    assert final.status is BatchStatus.CANCELLED, final
    counts = final.request_counts
    assert counts.completed >= REQUESTS // 2
    assert counts.failed > 0
    assert counts.completed + counts.failed == REQUESTS
    assert final.usage.output_tokens == MAX_TOKENS * counts.completed
    assert final.model == SERVED_MODEL
    directory = settings.output_dir / BATCH
    errors = [orjson.loads(line) for line in (directory / "error.jsonl").read_bytes().splitlines()]
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}
    assert worker_idle is not None, "the worker still held requests 60 s after the cancel"
    print(
        f"\n{at_cancel['answered']:.0f} of {REQUESTS} requests x {MAX_TOKENS} tokens answered "
        f"after {half_way:.1f} s; "
        f"at the cancel the worker held {at_cancel['in_flight']:.0f} requests and vLLM ran or "
        f"queued {at_cancel['in_engine']:.0f}. cancel() took {published - asking:.2f} s "
        f"(status view catch-up and publish). From the cancel published: worker holds nothing "
        f"after {worker_idle:.2f} s; vLLM runs nothing after "
        f"{'not seen' if engine_idle is None else f'{engine_idle:.2f} s'}; the worker aborted "
        f"{after['aborted'] - at_cancel['aborted']:.0f} requests in the engine. Final: "
        f"{counts.completed} completed, {counts.failed} batch_cancelled."
    )
