"""The official ``openai`` client against the gateway, served by uvicorn, in front of a real
broker, a worker on the echo engine and an aggregator: the OpenAI Batch API over HTTP is the
whole migration. Two gateways on one broker and one store answer alike."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

import openai
import orjson
import pytest

from llm_stream.batch.status import TERMINAL_STATUSES
from llm_stream.gateway.app import create_app
from llm_stream.settings import Settings
from tests.fakes import FakeEngine
from tests.gateway_support import jsonl, keyed_settings, pipeline, serving
from tests.kafka_helpers import collect

pytestmark = pytest.mark.broker

KEY = "sk-gateway-test-0123456789abcdef"
COMPLETIONS: Final = "/v1/completions"
#: Requests that each take a second in the engine, so a batch is seen in progress.
SLOW_LINES = 24


def _line(prompt: str) -> dict[str, Any]:
    body = {"model": "echo", "prompt": prompt, "max_tokens": 4}
    return {"custom_id": f"id-{prompt}", "method": "POST", "url": COMPLETIONS, "body": body}


@pytest.fixture
async def settings(isolated_settings: Settings) -> Settings:
    return await keyed_settings(isolated_settings, KEY)


def _client(base_url: str, key: str = KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0)


async def _until_final(
    client: openai.AsyncOpenAI, batch_id: str, within: float = 90
) -> tuple[openai.types.Batch, list[int]]:
    """Poll ``batches.retrieve`` until the batch ends; the requests done at each poll."""
    deadline = time.monotonic() + within
    done: list[int] = []
    while True:
        batch = await client.batches.retrieve(batch_id)
        counts = batch.request_counts
        done.append(counts.completed + counts.failed if counts else 0)
        if batch.status in TERMINAL_STATUSES:
            return batch, done
        assert time.monotonic() < deadline, f"batch {batch_id} still {batch.status}"
        await asyncio.sleep(0.2)


def _output_lines(content: bytes) -> list[dict[str, Any]]:
    lines = [orjson.loads(line) for line in content.splitlines()]
    for line in lines:  # OpenAI's batch output line
        assert set(line) == {"id", "custom_id", "response", "error"}
        assert set(line["response"]) == {"status_code", "request_id", "body"}
    return lines


async def test_the_openai_client_runs_a_batch_through_the_gateway(settings: Settings) -> None:
    engine = FakeEngine(delays={f"p{i}": 1.0 for i in range(SLOW_LINES)})
    lines = [_line(f"p{i}") for i in range(SLOW_LINES)] + [_line("explode")]
    async with pipeline(settings, engine), serving(create_app(settings)) as base:
        client = _client(base)
        uploaded = await client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
        assert (uploaded.purpose, uploaded.bytes) == ("batch", len(jsonl(lines)))

        created = await client.batches.create(
            input_file_id=uploaded.id,
            endpoint=COMPLETIONS,
            completion_window="24h",
            metadata={"team": "search"},
        )
        assert (created.status, created.input_file_id) == ("validating", uploaded.id)
        batch, done = await _until_final(client, created.id)

        assert batch.status == "completed", batch
        assert batch.request_counts is not None
        assert (batch.request_counts.completed, batch.request_counts.failed) == (SLOW_LINES, 1)
        assert any(0 < count < len(lines) for count in done), done  # seen moving
        raw = await client.batches.with_raw_response.retrieve(batch.id)
        assert openai.types.Batch.model_validate(raw.http_response.json()).id == batch.id
        assert batch.input_file_id == uploaded.id
        assert batch.metadata == {"team": "search"}

        assert batch.output_file_id is not None
        assert batch.error_file_id is not None
        output = _output_lines((await client.files.content(batch.output_file_id)).content)
        assert sorted(line["custom_id"] for line in output) == sorted(
            line["custom_id"] for line in lines[:-1]
        )
        assert {line["response"]["status_code"] for line in output} == {200}
        errors = _output_lines((await client.files.content(batch.error_file_id)).content)
        assert [(e["custom_id"], e["response"]["status_code"]) for e in errors] == [
            ("id-explode", 500)
        ]
        listed = {file.id: file for file in (await client.files.list()).data}
        assert {uploaded.id, batch.output_file_id, batch.error_file_id} <= set(listed)
        assert listed[batch.output_file_id].purpose == "batch_output"

        # A file with bad lines: a failed batch with an error per line, nothing submitted.
        bad = await client.files.create(
            file=("bad.jsonl", b"not json\n" + jsonl([_line("a"), _line("a")])), purpose="batch"
        )
        failed = await client.batches.create(
            input_file_id=bad.id, endpoint=COMPLETIONS, completion_window="24h"
        )
        assert failed.status == "failed"
        assert failed.errors is not None
        assert [error.line for error in failed.errors.data or []] == [1, 3]
        assert (await client.batches.retrieve(failed.id)).status == "failed"

        # Pages of one, newest first, until has_more is false: the client follows them.
        first = await client.batches.list(limit=1)
        assert first.has_more is True
        ids = [listed_batch.id async for listed_batch in client.batches.list(limit=1)]
        assert set(ids) == {batch.id, failed.id}
        assert len(ids) == 2

        deleted = await client.files.delete(uploaded.id)
        assert deleted.deleted is True
        with pytest.raises(openai.NotFoundError):
            await client.files.retrieve(uploaded.id)
        with pytest.raises(openai.AuthenticationError):
            await _client(base, key="sk-wrong").batches.list()

    requests = await collect(settings.bootstrap_servers, settings.requests_topic, bool, within=3)
    assert {request["batch_id"] for request in requests} == {batch.id}


async def test_two_gateways_on_one_broker_and_store_answer_alike(settings: Settings) -> None:
    lines = [_line(f"q{i}") for i in range(5)]
    async with (
        pipeline(settings, FakeEngine()),
        serving(create_app(settings)) as first_base,
        serving(create_app(settings)) as second_base,
    ):
        first, second = _client(first_base), _client(second_base)
        uploaded = await first.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
        assert (await second.files.retrieve(uploaded.id)).bytes == uploaded.bytes
        created = await first.batches.create(
            input_file_id=uploaded.id, endpoint=COMPLETIONS, completion_window="24h"
        )
        # Read-your-writes across replicas: the other has it at once, as validating or later.
        seen = await second.batches.retrieve(created.id)
        assert seen.input_file_id == uploaded.id
        assert created.id in [listed.id for listed in (await second.batches.list()).data]

        batch, _ = await _until_final(second, created.id)
        assert batch.status == "completed"
        assert batch.output_file_id is not None
        output = _output_lines((await second.files.content(batch.output_file_id)).content)
        assert len(output) == len(lines)
        assert (await first.files.content(batch.output_file_id)).content == (
            await second.files.content(batch.output_file_id)
        ).content
