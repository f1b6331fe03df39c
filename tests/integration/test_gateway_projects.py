"""Two projects through the official ``openai`` client, against the gateway on a real broker
with a worker on the echo engine and an aggregator: each project sees only its own files and
batches (list, retrieve, content, cancel: another's is 404), the admin key sees both, and a
batch's output file belongs to its project."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from llm_stream.batch.status import TERMINAL_STATUSES
from llm_stream.gateway.app import create_app
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from tests.fakes import FakeEngine
from tests.gateway_support import jsonl, pipeline, serving

pytestmark = pytest.mark.broker

SEARCH = "sk-search-0123456789abcdef012345678"
ADS = "sk-ads-0123456789abcdef0123456789ab"
ADMIN = "sk-admin-0123456789abcdef0123456789"
COMPLETIONS = "/v1/completions"


@pytest.fixture
async def settings(isolated_settings: Settings, tmp_path: Path) -> Settings:
    path = tmp_path / "projects.json"
    projects = {"search": {"keys": [SEARCH]}, "ads": {"keys": [ADS]}}
    path.write_text(json.dumps({"projects": projects, "admin_keys": [ADMIN]}))
    ready = isolated_settings.with_overrides(
        topic_partitions=2, gateway_projects_file=path, max_in_flight=8
    )
    await ensure_topics(ready)
    return ready


def _client(base_url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0)


def _lines(prefix: str) -> bytes:
    body = {"model": "echo", "prompt": prefix, "max_tokens": 4}
    return jsonl([{"custom_id": f"{prefix}-1", "method": "POST", "url": COMPLETIONS, "body": body}])


async def _final(client: openai.AsyncOpenAI, batch_id: str) -> openai.types.Batch:
    deadline = time.monotonic() + 90
    while (batch := await client.batches.retrieve(batch_id)).status not in TERMINAL_STATUSES:
        assert time.monotonic() < deadline, f"batch {batch_id} still {batch.status}"
        await asyncio.sleep(0.2)
    return batch


async def _is_unknown(call: Any) -> None:
    with pytest.raises(openai.NotFoundError):
        await call


async def test_two_projects_see_only_their_own_files_and_batches(settings: Settings) -> None:
    async with pipeline(settings, FakeEngine()), serving(create_app(settings)) as base:
        search, ads, admin = (_client(base, key) for key in (SEARCH, ADS, ADMIN))
        search_file = await search.files.create(file=("s.jsonl", _lines("s")), purpose="batch")
        ads_file = await ads.files.create(file=("a.jsonl", _lines("a")), purpose="batch")
        search_batch = await search.batches.create(
            input_file_id=search_file.id, endpoint=COMPLETIONS, completion_window="24h"
        )
        ads_batch = await ads.batches.create(
            input_file_id=ads_file.id, endpoint=COMPLETIONS, completion_window="24h"
        )
        done = await _final(search, search_batch.id)
        assert done.status == "completed"
        assert done.output_file_id is not None
        ads_done = await _final(ads, ads_batch.id)

        # Lists: each its own, the admin both.
        search_files = {file.id async for file in search.files.list()}
        assert search_files == {search_file.id, done.output_file_id}
        ads_files = {file.id async for file in ads.files.list()}
        assert ads_file.id in ads_files
        assert not ads_files & search_files
        admin_files = {file.id async for file in admin.files.list()}
        assert search_files | ads_files <= admin_files
        assert {batch.id async for batch in search.batches.list()} == {search_batch.id}
        assert {batch.id async for batch in ads.batches.list()} == {ads_batch.id}
        assert {batch.id async for batch in admin.batches.list()} >= {
            search_batch.id,
            ads_batch.id,
        }

        # Another project's objects are unknown ids: retrieve, content, cancel, input.
        await _is_unknown(ads.files.retrieve(search_file.id))
        await _is_unknown(ads.files.content(search_file.id))
        await _is_unknown(ads.files.content(done.output_file_id))
        await _is_unknown(ads.batches.retrieve(search_batch.id))
        await _is_unknown(ads.batches.cancel(search_batch.id))
        await _is_unknown(search.batches.retrieve(ads_batch.id))
        await _is_unknown(
            search.batches.create(
                input_file_id=ads_file.id, endpoint=COMPLETIONS, completion_window="24h"
            )
        )

        # The owner and the admin read the same output.
        own = (await search.files.content(done.output_file_id)).content
        assert b'"custom_id":"s-1"' in own.replace(b" ", b"")
        assert (await admin.files.content(done.output_file_id)).content == own
        assert (await admin.batches.retrieve(ads_batch.id)).status == ads_done.status
        # A finished batch is answered as it is: the admin may ask, the owner too.
        assert (await admin.batches.cancel(ads_batch.id)).status == ads_done.status
