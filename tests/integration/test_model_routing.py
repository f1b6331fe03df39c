"""Two worker groups, one per model, on a real broker with requests routed by model: each
batch reaches only its model's workers, a model nobody serves is refused before anything is
published, a batch of both models completes with each line answered by its own, and a
producer that does not route (raw records on the shared requests topic) is answered by the
right group once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from llm_stream.aggregator.app import AggregatorApp
from llm_stream.client import BatchClient, ModelNotServedError
from llm_stream.contracts import BatchManifest
from llm_stream.kafka.model_topics import model_requests_topic
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from llm_stream.worker.app import WorkerApp
from tests.fakes import FakeEngine
from tests.kafka_helpers import collect, publish

pytestmark = pytest.mark.broker


def _line(custom_id: str, model: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": custom_id}
    if model is not None:
        body["model"] = model
    return {"custom_id": custom_id, "url": "/v1/completions", "body": body}


async def _until(condition: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


def _served(worker: WorkerApp) -> list[str]:
    engine = worker.engine
    assert isinstance(engine, FakeEngine)
    return sorted(request.body["prompt"] for request in engine.seen)


def _answers(settings: Settings, batch_id: str) -> dict[str, str]:
    """Each custom_id's answering model, from the batch's output file."""
    lines = (settings.output_dir / batch_id / "output.jsonl").read_bytes().splitlines()
    answers = [orjson.loads(line) for line in lines]
    return {a["custom_id"]: a["response"]["body"]["model"] for a in answers}


async def test_each_model_is_served_by_its_own_group_only(isolated_settings: Settings) -> None:
    settings = isolated_settings.with_overrides(
        route_by_model=True,
        batch_allow_mixed_models=True,
        worker_heartbeat_interval_s=1.0,
        topic_partitions=2,
        max_in_flight=8,
    )
    small = WorkerApp(settings, FakeEngine(models=("small",)))
    large = WorkerApp(settings, FakeEngine(models=("large",)))
    aggregator = AggregatorApp(settings)
    tasks = [asyncio.create_task(app.run()) for app in (small, large, aggregator)]
    try:
        async with BatchClient.from_settings(settings) as client:
            directory = client.workers()

            async def both_announced() -> bool:
                live = await directory.current(30)
                return {"small", "large"} <= set(live.models())

            deadline = time.monotonic() + 60
            while not await both_announced():
                assert time.monotonic() < deadline, "the workers never announced themselves"
                assert not any(task.done() for task in tasks), "a role stopped"
                await asyncio.sleep(0.5)

            with pytest.raises(ModelNotServedError, match="gone"):
                await client.submit(
                    [_line("x", "gone")], batch_id="unserved", endpoint="/v1/completions"
                )
            assert await client.retrieve("unserved") is None  # nothing was published

            await client.submit(
                [_line(f"s{n}", "small") for n in range(20)],
                batch_id="for-small",
                endpoint="/v1/completions",
            )
            await client.submit(
                [_line(f"l{n}", "large") for n in range(20)],
                batch_id="for-large",
                endpoint="/v1/completions",
            )
            mixed = [_line(f"m{n}", "small" if n % 2 else "large") for n in range(10)]
            await client.submit(
                mixed, batch_id="mixed", endpoint="/v1/completions", models=["small", "large"]
            )

        # A producer that does not route: its manifest and records, raw, on the shared topic;
        # a line naming no model goes to the first served model in name order (large).
        manifest = BatchManifest(batch_id="foreign", endpoint="/v1/completions", request_count=4)
        await publish(
            settings.bootstrap_servers,
            settings.batches_topic,
            [manifest.model_dump_json().encode()],
            key=b"foreign",
        )
        foreign = [
            _line("f0", "small"),
            _line("f1", "large"),
            _line("f2", None),
            _line("f3", "gone"),
        ]
        await publish(
            settings.bootstrap_servers,
            settings.requests_topic,
            [orjson.dumps({**line, "batch_id": "foreign"}) for line in foreign],
        )

        batches = ("for-small", "for-large", "mixed", "foreign")
        await _until(
            lambda: all(aggregator.aggregator.is_finished(b) for b in batches),
            90,
            "the batches were never written",
        )
    finally:
        for app in (small, large, aggregator):
            app.stopping.set()
        codes = [await asyncio.wait_for(task, 60) for task in tasks]
    assert codes == [0, 0, 0]

    assert _served(small) == sorted(
        [f"s{n}" for n in range(20)] + [f"m{n}" for n in range(1, 10, 2)] + ["f0"]
    )
    assert _served(large) == sorted(
        [f"l{n}" for n in range(20)] + [f"m{n}" for n in range(0, 10, 2)] + ["f1", "f2"]
    )
    assert set(_answers(settings, "for-small").values()) == {"small"}
    assert set(_answers(settings, "for-large").values()) == {"large"}
    assert _answers(settings, "mixed") == {
        f"m{n}": "small" if n % 2 else "large" for n in range(10)
    }
    assert _answers(settings, "foreign") == {"f0": "small", "f1": "large", "f2": "echo"}
    # f3's model is nobody's: the large group (first in name order) answered it as vLLM would.
    errors = (settings.output_dir / "foreign" / "error.jsonl").read_bytes().splitlines()
    [unknown] = [orjson.loads(line) for line in errors]
    assert unknown["custom_id"] == "f3"
    assert unknown["response"]["status_code"] == 404
    assert unknown["response"]["body"]["error"]["message"] == (
        "The model `gone` does not exist. Valid aliases: large."
    )
    assert model_requests_topic(settings.requests_topic, "small") in small.loop.topics
    # Both groups read the shared topic; each record there was answered once, not by both.
    results = await collect(
        settings.bootstrap_servers, settings.results_topic, lambda values: False, within=3
    )
    foreign_answers = sorted(r["custom_id"] for r in results if r["batch_id"] == "foreign")
    assert foreign_answers == ["f0", "f1", "f2", "f3"]


async def test_a_batch_whose_model_has_no_worker_is_reported_until_one_comes(
    isolated_settings: Settings,
) -> None:
    """Its requests wait in the model's topic: the batch object says so (and the gauge), and
    once a worker for the model starts the batch completes without the error."""
    settings = isolated_settings.with_overrides(
        route_by_model=True,
        worker_heartbeat_interval_s=1.0,
        unserved_model_report_s=1.0,
        topic_partitions=2,
        max_in_flight=8,
    )
    small = WorkerApp(settings, FakeEngine(models=("small",)))
    aggregator = AggregatorApp(settings)
    tasks = [asyncio.create_task(app.run()) for app in (small, aggregator)]
    large: WorkerApp | None = None
    try:
        # A producer that routes by itself: the large model's topic, which nobody reads yet.
        manifest = BatchManifest(
            batch_id="waits", endpoint="/v1/completions", request_count=2, model="large"
        )
        await publish(
            settings.bootstrap_servers,
            settings.batches_topic,
            [manifest.model_dump_json().encode()],
            key=b"waits",
        )
        await ensure_topics(settings, [model_requests_topic(settings.requests_topic, "large")])
        await publish(
            settings.bootstrap_servers,
            model_requests_topic(settings.requests_topic, "large"),
            [orjson.dumps({**_line(f"w{n}", "large"), "batch_id": "waits"}) for n in range(2)],
        )
        async with BatchClient.from_settings(settings) as client:
            deadline = time.monotonic() + 60
            while True:
                batch = await client.retrieve("waits")
                if batch is not None and batch.errors is not None:
                    break
                assert time.monotonic() < deadline, "the waiting batch was never reported"
                await asyncio.sleep(0.3)
            [error] = batch.errors["data"]
            assert error["code"] == "model_not_served"
            assert "`large`" in error["message"]
            assert batch.status == "validating"  # nothing answered yet
            assert REGISTRY.get_sample_value("llm_stream_batches_waiting_for_model") == 1

            large = WorkerApp(settings, FakeEngine(models=("large",)))
            tasks.append(asyncio.create_task(large.run()))
            done = await client.wait("waits", timeout=60)
        assert done is not None
        assert done.status == "completed"
        assert done.errors is None
        await _until(
            lambda: REGISTRY.get_sample_value("llm_stream_batches_waiting_for_model") == 0,
            10,
            "the gauge still counts the batch",
        )
    finally:
        for app in (small, aggregator, large):
            if app is not None:
                app.stopping.set()
        codes = [await asyncio.wait_for(task, 60) for task in tasks]
    assert set(codes) == {0}
