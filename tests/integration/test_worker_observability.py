"""A worker (fake engine, real broker) exposes metrics that move by the right amounts, and
health endpoints that tell live from ready."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_stream.network import free_port
from llm_stream.settings import Settings
from llm_stream.worker.app import WorkerApp
from tests.fakes import FakeEngine
from tests.kafka_helpers import collect, publish

pytestmark = pytest.mark.broker


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except urllib.error.URLError as error:  # not listening yet
        return 0, str(error)


async def _scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = await asyncio.to_thread(_get, f"{base}/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
async def running_worker(
    isolated_settings: Settings,
) -> AsyncIterator[tuple[WorkerApp, FakeEngine, str, asyncio.Task[int]]]:
    settings = isolated_settings.with_overrides(
        topic_partitions=2, ops_host="127.0.0.1", ops_port=free_port()
    )
    engine = FakeEngine()
    worker = WorkerApp(settings, engine)
    task = asyncio.create_task(worker.run())
    base = f"http://127.0.0.1:{settings.ops_port}"
    for _ in range(200):
        if (await asyncio.to_thread(_get, f"{base}/readyz"))[0] == 200 or task.done():
            break
        await asyncio.sleep(0.1)
    try:
        yield worker, engine, base, task
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 30)


def _line(custom_id: str, **fields: object) -> bytes:
    line = {
        "batch_id": "metrics",
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/completions",
        "body": {"model": "fake", "prompt": f"p-{custom_id}"},
        **fields,
    }
    return orjson.dumps(line)


async def test_metrics_count_what_the_worker_did(
    running_worker: tuple[WorkerApp, FakeEngine, str, asyncio.Task[int]],
) -> None:
    worker, _, base, task = running_worker
    settings = worker.settings
    before = await _scrape(base)
    lines = [_line(f"ok-{i}") for i in range(5)]
    lines += [_line("wrong-endpoint", url="/v1/nope"), _line("malformed", body="x"), b"garbage"]
    await publish(settings.bootstrap_servers, settings.requests_topic, lines)
    await collect(
        settings.bootstrap_servers, settings.results_topic, lambda got: len(got) >= 7, within=30
    )

    def lag_partitions(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> set[str]:
        return {
            dict(labels)["partition"]
            for name, labels in samples
            if name == "llm_stream_consumer_lag"
            and dict(labels)["topic"] == settings.requests_topic
        }

    def settled(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> bool:
        """The lag gauge refreshed (every commit interval), and the last record's work done:
        the results are on the topic before the in-flight gauge (and a dead letter) move."""
        in_flight = ("llm_stream_requests_in_flight", ())
        idle = samples.get(in_flight, 0.0) == before.get(in_flight, 0.0)
        return bool(lag_partitions(samples)) and idle

    after = await _scrape(base)
    for _ in range(100):
        if settled(after):
            break
        await asyncio.sleep(0.1)
        after = await _scrape(base)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    answered = "llm_stream_requests_answered_total"
    assert delta("llm_stream_requests_consumed_total") == 8
    assert delta(answered, endpoint="/v1/completions", status_code="200") == 5
    assert delta(answered, endpoint="other", status_code="404") == 1
    assert delta(answered, endpoint="invalid", status_code="400") == 1
    assert delta("llm_stream_requests_failed_total", endpoint="other", status_code="404") == 1
    assert delta("llm_stream_dead_letters_total") == 1
    assert delta("llm_stream_completion_tokens_total", endpoint="/v1/completions") == 10
    ttft = "llm_stream_time_to_first_token_seconds_count"
    assert delta(ttft, endpoint="/v1/completions") == 5
    latency = "llm_stream_end_to_end_latency_seconds_count"
    assert delta(latency, endpoint="/v1/completions") == 5
    assert delta("llm_stream_requests_in_flight") == 0  # a process-wide gauge: other tests share it
    assert lag_partitions(after)  # the lag gauge covers the assigned partitions
    assert any(name.startswith("faststream_") for name, _ in after)
    worker.stopping.set()
    assert await asyncio.wait_for(task, 30) == 0


async def test_a_dead_engine_makes_the_worker_unready_then_stop_with_an_error(
    running_worker: tuple[WorkerApp, FakeEngine, str, asyncio.Task[int]],
) -> None:
    worker, engine, base, task = running_worker
    assert await asyncio.to_thread(_get, f"{base}/readyz") == (200, "ready\n")
    assert (await asyncio.to_thread(_get, f"{base}/healthz"))[0] == 200
    engine.dead = True
    status, body = await asyncio.to_thread(_get, f"{base}/readyz")
    assert status == 503
    assert "engine unavailable" in body
    # Exit non-zero so the orchestrator restarts it; its requests go to other workers.
    assert await asyncio.wait_for(task, 30) == 1
    assert worker.pipeline.failed.is_set()
