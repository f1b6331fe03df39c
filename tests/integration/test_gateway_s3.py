"""The official ``openai`` client's batch flow (as in ``test_gateway``) with object storage: the
aggregator writes and two gateways read every file through an S3 server on loopback, and
nothing lands in the local output directory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from pydantic import SecretStr

from llm_stream.gateway.app import create_app
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from tests.fakes import FakeEngine
from tests.gateway_support import jsonl, serving
from tests.integration.test_gateway import (
    COMPLETIONS,
    KEY,
    _client,
    _line,
    _output_lines,
    _until_final,
    pipeline,
)
from tests.s3_harness import new_bucket, s3_client, s3_server

pytestmark = pytest.mark.broker

PREFIX = "llm-stream/prod"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with s3_server() as url:
        yield url


@pytest.fixture
async def settings(isolated_settings: Settings, endpoint: str) -> Settings:
    ready = isolated_settings.with_overrides(
        topic_partitions=2,
        gateway_api_keys=[SecretStr(KEY)],
        storage_url=f"s3://{new_bucket(endpoint)}/{PREFIX}",
        s3_endpoint_url=endpoint,
    )
    await ensure_topics(ready)
    return ready


def _keys(settings: Settings) -> set[str]:
    assert settings.storage_url is not None
    bucket = settings.storage_url.removeprefix("s3://").split("/")[0]
    listed: dict[str, Any] = s3_client(str(settings.s3_endpoint_url)).list_objects_v2(Bucket=bucket)
    return {stored["Key"] for stored in listed.get("Contents", [])}


async def _until_stored(settings: Settings, key: str, within: float = 20) -> None:
    """The aggregator publishes a batch's final status before it stores the batch object (and
    indexes the files it names): a client may see ``completed`` a moment before either."""
    deadline = time.monotonic() + within
    while key not in _keys(settings):
        assert time.monotonic() < deadline, f"{key} was never stored"
        await asyncio.sleep(0.05)


async def test_the_openai_client_runs_a_batch_on_object_storage(settings: Settings) -> None:
    lines = [_line(f"s{i}") for i in range(6)] + [_line("explode")]
    async with (
        pipeline(settings, FakeEngine()),
        serving(create_app(settings)) as first_base,
        serving(create_app(settings)) as second_base,
    ):
        first, second = _client(first_base), _client(second_base)
        uploaded = await first.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
        upload_key = f"{PREFIX}/_uploads/{uploaded.id}"
        assert {upload_key, f"{upload_key}.json"} <= _keys(settings)
        assert (await second.files.retrieve(uploaded.id)).bytes == len(jsonl(lines))

        created = await first.batches.create(
            input_file_id=uploaded.id, endpoint=COMPLETIONS, completion_window="24h"
        )
        batch, _ = await _until_final(second, created.id)
        assert batch.status == "completed", batch
        assert batch.input_file_id == uploaded.id
        assert batch.output_file_id == f"file-{batch.id}-output"
        assert batch.error_file_id is not None
        await _until_stored(settings, f"{PREFIX}/{batch.id}/batch.json")
        assert {
            f"{PREFIX}/{batch.id}/{name}"
            for name in ("output.jsonl", "error.jsonl", "batch.json", "input_file.json")
        } <= _keys(settings)

        output = _output_lines((await second.files.content(batch.output_file_id)).content)
        assert sorted(line["custom_id"] for line in output) == sorted(
            line["custom_id"] for line in lines[:-1]
        )
        assert (await first.files.content(batch.output_file_id)).content == (
            await second.files.content(batch.output_file_id)
        ).content
        errors = _output_lines((await first.files.content(batch.error_file_id)).content)
        assert [(e["custom_id"], e["response"]["status_code"]) for e in errors] == [
            ("id-explode", 500)
        ]
        listed = {file.id: file for file in (await second.files.list()).data}
        assert {uploaded.id, batch.output_file_id, batch.error_file_id} <= set(listed)
        assert listed[batch.output_file_id].purpose == "batch_output"

        assert (await second.files.delete(uploaded.id)).deleted is True
        with pytest.raises(openai.NotFoundError):
            await first.files.retrieve(uploaded.id)
        assert not {upload_key, f"{upload_key}.json"} & _keys(settings)

    assert not settings.output_dir.exists()  # everything went to the bucket
