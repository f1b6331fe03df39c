"""A running batch's lines over HTTP (``GET /v1/batches/{id}/output``) from a real broker's
results topic, while slow lines are still in the engine: the answered lines are there, paged by
cursor, none of another batch's; once the batch ends, they are the lines its files hold."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import openai
import orjson
import pytest

from llm_stream.batch.status import TERMINAL_STATUSES
from llm_stream.gateway.app import create_app
from llm_stream.settings import Settings
from tests.fakes import FakeEngine
from tests.gateway_support import jsonl, keyed_settings, pipeline, serving

pytestmark = pytest.mark.broker

KEY = "sk-so-far-test-0123456789abcdef0"
COMPLETIONS = "/v1/completions"
FAST = [f"fast-{number}" for number in range(6)]
SLOW = [f"slow-{number}" for number in range(2)]
#: Long enough that the fast lines are read while the slow ones are in the engine.
SLOW_S = 6.0


def _line(prompt: str) -> dict[str, Any]:
    body = {"model": "echo", "prompt": prompt, "max_tokens": 4}
    return {"custom_id": f"id-{prompt}", "method": "POST", "url": COMPLETIONS, "body": body}


@pytest.fixture
async def settings(isolated_settings: Settings) -> Settings:
    return await keyed_settings(isolated_settings, KEY)


async def _create(client: openai.AsyncOpenAI, prompts: list[str]) -> str:
    uploaded = await client.files.create(
        file=("in.jsonl", jsonl(_line(prompt) for prompt in prompts)), purpose="batch"
    )
    created = await client.batches.create(
        input_file_id=uploaded.id, endpoint=COMPLETIONS, completion_window="1h"
    )
    return created.id


async def _all_pages(http: httpx.AsyncClient, batch_id: str, limit: int) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        response = await http.get(f"/v1/batches/{batch_id}/output", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["data"]) <= limit
        lines += page["data"]
        if not page["has_more"]:
            return lines
        params["after"] = page["next_after"]


async def test_a_running_batchs_answered_lines_are_served_over_http(settings: Settings) -> None:
    engine = FakeEngine(delays=dict.fromkeys(SLOW, SLOW_S))
    async with pipeline(settings, engine), serving(create_app(settings)) as base:
        client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
            running = await _create(client, [*FAST, "explode", *SLOW])
            other = await _create(client, ["other-0", "other-1"])
            answered = {f"id-{prompt}" for prompt in [*FAST, "explode"]}

            deadline = time.monotonic() + 60
            while True:
                so_far = await _all_pages(http, running, limit=100)
                if {line["custom_id"] for line in so_far} >= answered:
                    break
                assert time.monotonic() < deadline, so_far
                await asyncio.sleep(0.2)
            status = (await client.batches.retrieve(running)).status
            assert status not in TERMINAL_STATUSES  # the slow lines are still running
            assert {line["custom_id"] for line in so_far} == answered
            for line in so_far:
                assert set(line) == {"id", "custom_id", "response", "error"}
            by_id = {line["custom_id"]: line for line in so_far}
            assert by_id["id-explode"]["response"]["status_code"] == 500
            assert by_id["id-fast-0"]["response"]["status_code"] == 200
            paged = await _all_pages(http, running, limit=2)
            assert [line["id"] for line in paged] == [line["id"] for line in so_far]

            batch = await client.batches.retrieve(running)
            while batch.status not in TERMINAL_STATUSES:
                await asyncio.sleep(0.2)
                batch = await client.batches.retrieve(running)
            assert batch.status == "completed"
            assert batch.output_file_id is not None
            assert batch.error_file_id is not None
            in_files = set()
            for file_id in (batch.output_file_id, batch.error_file_id):
                content = (await client.files.content(file_id)).content
                in_files |= {openai_line["custom_id"] for openai_line in _lines(content)}
            everything = {line["custom_id"] for line in await _all_pages(http, running, 100)}
            assert everything == in_files == answered | {f"id-{prompt}" for prompt in SLOW}
            others = {line["custom_id"] for line in await _all_pages(http, other, 100)}
            assert others <= {"id-other-0", "id-other-1"}


def _lines(content: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in content.splitlines()]
