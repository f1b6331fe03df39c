"""The gateway on a real broker, routing by model: ``/v1/models`` follows the workers'
announcements (a worker's model appears once it runs and is gone once it stops), and a batch
for a model nobody serves fails at creation with ``model_not_found`` while one for a served
model completes, through the openai client."""

from __future__ import annotations

import asyncio
import time

import openai
import orjson
import pytest

from llm_stream.gateway.app import create_app
from llm_stream.settings import Settings
from tests.fakes import FakeEngine
from tests.gateway_support import chat_line, jsonl, keyed_settings, pipeline, serving

pytestmark = pytest.mark.broker

KEY = "models-test-key-" + "k" * 32


async def _models(client: openai.AsyncOpenAI) -> list[str]:
    return sorted(model.id for model in (await client.models.list()).data)


async def _until_models(client: openai.AsyncOpenAI, expected: list[str], within: float) -> None:
    deadline = time.monotonic() + within
    while (found := await _models(client)) != expected:
        assert time.monotonic() < deadline, f"models stayed {found}, expected {expected}"
        await asyncio.sleep(0.3)


async def _batch(client: openai.AsyncOpenAI, model: str) -> openai.types.Batch:
    uploaded = await client.files.create(
        file=("in.jsonl", jsonl([chat_line("a", model=model), chat_line("b", model=model)])),
        purpose="batch",
    )
    return await client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )


async def test_the_models_listed_are_those_live_workers_serve(isolated_settings: Settings) -> None:
    settings = (await keyed_settings(isolated_settings, KEY)).with_overrides(
        route_by_model=True, worker_heartbeat_interval_s=1.0
    )
    async with serving(create_app(settings)) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        assert await _models(client) == []
        refused = await _batch(client, "small")
        assert refused.status == "failed"
        assert refused.errors is not None
        assert refused.errors.data is not None
        assert [error.code for error in refused.errors.data] == ["model_not_found"]

        async with pipeline(settings, FakeEngine(models=("small",))):
            await _until_models(client, ["small"], within=30)
            model = await client.models.retrieve("small")
            assert (model.id, model.object) == ("small", "model")
            with pytest.raises(openai.NotFoundError):
                await client.models.retrieve("large")
            batch = await _batch(client, "small")
            deadline = time.monotonic() + 60
            while batch.status != "completed":
                assert time.monotonic() < deadline, f"batch stayed {batch.status}"
                await asyncio.sleep(0.3)
                batch = await client.batches.retrieve(batch.id)
            assert batch.output_file_id is not None
            content = (await client.files.content(batch.output_file_id)).content
            answers = [orjson.loads(line) for line in content.splitlines()]
            assert {a["response"]["body"]["model"] for a in answers} == {"small"}

        await _until_models(client, [], within=10)  # the stopped worker withdrew
