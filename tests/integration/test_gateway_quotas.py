"""Quotas and rate limits with two gateway replicas on a real broker, through the official
``openai`` client: a third batch past the project's enqueued tokens fails with
``token_limit_exceeded`` though the first two were created on the other replica; a key's
requests per minute hold across both replicas (the second refuses what the first counted),
answered 429 with ``Retry-After`` and the ``x-ratelimit-*`` headers."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import openai
import pytest

from llm_stream.gateway.app import create_app
from llm_stream.gateway.rate_sync import RateSync
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from tests.gateway_support import jsonl, serving

pytestmark = pytest.mark.broker

SEARCH = "sk-search-0123456789abcdef012345678"
COMPLETIONS = "/v1/completions"
#: 40 bytes of prompt: 10 estimated tokens a line.
PROMPT = "y" * 40


@pytest.fixture
async def settings(isolated_settings: Settings, tmp_path: Path) -> Settings:
    path = tmp_path / "projects.json"
    projects = {"search": {"keys": [SEARCH], "requests_per_minute": 10}}
    path.write_text(json.dumps({"projects": projects}))
    ready = isolated_settings.with_overrides(
        topic_partitions=2, gateway_projects_file=path, quota_enqueued_tokens=25
    )
    await ensure_topics(ready)
    return ready


def _lines(prefix: str) -> bytes:
    body = {"model": "echo", "prompt": PROMPT, "max_tokens": 4}
    return jsonl([{"custom_id": f"{prefix}-1", "method": "POST", "url": COMPLETIONS, "body": body}])


def _client(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=SEARCH, max_retries=0)


async def test_a_third_batch_past_the_quota_fails_whichever_replica_made_the_others(
    settings: Settings,
) -> None:
    first_app, second_app = create_app(settings), create_app(settings)
    async with serving(first_app) as first_url, serving(second_app) as second_url:
        first, second = _client(first_url), _client(second_url)
        created = []
        for client, name in ((first, "a"), (second, "b"), (first, "c")):
            uploaded = await client.files.create(
                file=(f"{name}.jsonl", _lines(name)), purpose="batch"
            )
            created.append(
                await client.batches.create(
                    input_file_id=uploaded.id, endpoint=COMPLETIONS, completion_window="24h"
                )
            )
    assert [batch.status for batch in created[:2]] == ["validating", "validating"]
    refused = created[2]
    assert refused.status == "failed"
    assert refused.errors is not None
    assert refused.errors.data is not None
    assert refused.errors.data[0].code == "token_limit_exceeded"
    assert "Limit: 25 enqueued tokens" in (refused.errors.data[0].message or "")


async def _heard(sync: RateSync, at_least: int) -> None:
    deadline = time.monotonic() + 10
    while sync.heard < at_least:
        assert time.monotonic() < deadline, "the other replica's counts never arrived"
        await asyncio.sleep(0.05)


async def test_a_keys_requests_per_minute_hold_across_two_replicas(settings: Settings) -> None:
    first_app, second_app = create_app(settings), create_app(settings)
    async with serving(first_app) as first_url, serving(second_app) as second_url:
        auth = {"Authorization": f"Bearer {SEARCH}"}
        async with httpx.AsyncClient(headers=auth) as http:
            for _ in range(6):
                answer = await http.get(f"{first_url}/v1/batches")
                assert answer.status_code == 200, answer.text
            await _heard(second_app.state.rate_sync, 1)
            second = [await http.get(f"{second_url}/v1/batches") for _ in range(6)]
        assert [answer.status_code for answer in second] == [200] * 4 + [429] * 2
        assert second[3].headers["x-ratelimit-remaining-requests"] == "0"
        refused = second[4]
        assert refused.headers["x-ratelimit-limit-requests"] == "10"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"

        # The first replica hears the second's and refuses too; the openai client sees
        # OpenAI's RateLimitError, with the headers to pace itself.
        await _heard(first_app.state.rate_sync, 1)
        with pytest.raises(openai.RateLimitError) as raised:
            await _client(first_url).batches.list()
        assert raised.value.response.headers["x-ratelimit-remaining-requests"] == "0"
