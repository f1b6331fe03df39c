"""Two worker groups of real vLLM engines (the tiny model under two served names), routed by
model: a batch naming both models is answered line by line by each model's own engine, and a
record on the shared topic for a model nobody serves is answered once, with vLLM's own 404."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import orjson
import pytest

from llm_stream.aggregator.app import AggregatorApp
from llm_stream.client import BatchClient
from llm_stream.contracts import BatchManifest
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from tests.kafka_helpers import publish
from tests.processes import running, worker_args

pytestmark = [pytest.mark.engine, pytest.mark.broker]

MODELS = ("large", "small")


def _line(custom_id: str, model: str) -> dict[str, object]:
    body = {"model": model, "prompt": custom_id, "max_tokens": 4, "temperature": 0}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/completions", "body": body}


async def test_each_line_is_answered_by_its_models_engine(
    kafka_bootstrap: str, tiny_model: str, tmp_path: Path
) -> None:
    prefix = f"e2e-routing-{os.getpid()}"
    fields = {
        "bootstrap_servers": kafka_bootstrap,
        "requests_topic": f"{prefix}.requests",
        "results_topic": f"{prefix}.results",
        "batches_topic": f"{prefix}.batches",
        "batch_status_topic": f"{prefix}.status",
        "dead_letter_topic": f"{prefix}.dead-letter",
        "workers_topic": f"{prefix}.workers",
        "worker_group_id": f"{prefix}.workers",
        "aggregator_group_id": f"{prefix}.aggregators",
        "route_by_model": "true",
        "batch_allow_mixed_models": "true",
        "worker_heartbeat_interval_s": "1",
        "topic_partitions": "2",
    }
    settings = Settings(**fields, output_dir=tmp_path / "batches")
    await ensure_topics(settings)
    aggregator = AggregatorApp(settings)
    aggregating = asyncio.create_task(aggregator.run())
    logs = {model: tmp_path / f"{model}.log" for model in MODELS}
    try:
        with (
            running(worker_args(tiny_model, "large"), fields, logs["large"]) as large,
            running(worker_args(tiny_model, "small"), fields, logs["small"]) as small,
        ):
            async with BatchClient.from_settings(settings) as client:
                deadline = time.monotonic() + 600
                while set((await client.workers().current(30)).models()) != set(MODELS):
                    for process, model in ((large, "large"), (small, "small")):
                        assert process.poll() is None, logs[model].read_text()[-3000:]
                    assert time.monotonic() < deadline, "the workers never announced"
                    await asyncio.sleep(1)
                lines = [_line(f"{model}-{n}", model) for model in MODELS for n in range(3)]
                await client.submit(
                    lines, batch_id="both", endpoint="/v1/completions", models=list(MODELS)
                )
                # Another team's producer, not routing: the shared topic, a model nobody serves.
                manifest = BatchManifest(
                    batch_id="foreign", endpoint="/v1/completions", request_count=1
                )
                await publish(
                    kafka_bootstrap,
                    settings.batches_topic,
                    [manifest.model_dump_json().encode()],
                    key=b"foreign",
                )
                record = {**_line("nobody-0", "nobody"), "batch_id": "foreign"}
                await publish(kafka_bootstrap, settings.requests_topic, [orjson.dumps(record)])
                both = await client.wait("both", timeout=300)
                foreign = await client.wait("foreign", timeout=60)
    finally:
        aggregator.stopping.set()
        await asyncio.wait_for(aggregating, 60)
    assert both is not None
    assert both.status == "completed"
    output = (settings.output_dir / "both" / "output.jsonl").read_bytes().splitlines()
    answered = {
        line["custom_id"]: line["response"]["body"]["model"] for line in map(orjson.loads, output)
    }
    assert answered == {f"{model}-{n}": model for model in MODELS for n in range(3)}
    assert foreign is not None
    assert (foreign.request_counts.total, foreign.request_counts.failed) == (1, 1)
    errors = (settings.output_dir / "foreign" / "error.jsonl").read_bytes().splitlines()
    [refused] = map(orjson.loads, errors)
    assert refused["response"]["status_code"] == 404
    # vLLM's own words, from the group whose model comes first in name order.
    message = refused["response"]["body"]["error"]["message"]
    assert message == "The model `nobody` does not exist. Valid aliases: large."
