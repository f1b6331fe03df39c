"""Expiry end to end, on a real broker with the aggregator writing to a directory and to an S3
server: the official client uploads with ``expires_after`` and creates a batch with
``output_expires_after``; the file objects show when each expires; at a clock past it the
aggregator's sweep deletes the files from disk or the bucket and the gateway answers 404 as
OpenAI does for a deleted file, while a file that expires later stays."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from pydantic import SecretStr

from llm_stream.files.opening import open_store
from llm_stream.files.upkeep import sweep_expired
from llm_stream.gateway.app import create_app
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from tests.fakes import FakeEngine
from tests.gateway_support import jsonl, pipeline, serving
from tests.integration.test_gateway import COMPLETIONS, KEY, _client, _line, _until_final
from tests.s3_harness import new_bucket, s3_server

pytestmark = pytest.mark.broker

HOUR, DAY = 3600, 86_400


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with s3_server() as url:
        yield url


@pytest.fixture(params=["directory", "s3"])
async def settings(
    request: pytest.FixtureRequest, isolated_settings: Settings, tmp_path: Path
) -> Settings:
    storage = {}
    if request.param == "s3":
        endpoint = request.getfixturevalue("endpoint")
        storage = {"storage_url": f"s3://{new_bucket(endpoint)}/p", "s3_endpoint_url": endpoint}
    ready = isolated_settings.with_overrides(
        topic_partitions=2,
        gateway_api_keys=[SecretStr(KEY)],
        output_dir=tmp_path / "batches",
        **storage,
    )
    await ensure_topics(ready)
    return ready


async def test_expired_files_are_deleted_and_answer_404(settings: Settings) -> None:
    lines = [_line(f"p{number}") for number in range(3)] + [_line("explode")]
    async with pipeline(settings, FakeEngine()), serving(create_app(settings)) as base:
        client = _client(base)
        content = jsonl(lines)
        short = await client.files.create(
            file=("in.jsonl", content),
            purpose="batch",
            extra_body={"expires_after": {"anchor": "created_at", "seconds": HOUR}},
        )
        kept = await client.files.create(file=("other.jsonl", content), purpose="batch")
        assert short.expires_at == short.created_at + HOUR
        assert kept.expires_at == kept.created_at + 30 * DAY  # OpenAI's default

        created = await client.batches.create(
            input_file_id=short.id,
            endpoint=COMPLETIONS,
            completion_window="24h",
            extra_body={"output_expires_after": {"anchor": "created_at", "seconds": 2 * HOUR}},
        )
        batch, _ = await _until_final(client, created.id)
        assert batch.status == "completed"
        assert batch.model_extra is not None
        assert batch.model_extra["output_expires_after"] == {
            "anchor": "created_at",
            "seconds": 2 * HOUR,
        }
        assert batch.output_file_id is not None
        assert batch.error_file_id is not None
        outputs = [batch.output_file_id, batch.error_file_id]
        for file_id in outputs:
            shown = await client.files.retrieve(file_id)
            assert shown.expires_at == shown.created_at + 2 * HOUR

        store = open_store(settings)  # the aggregator's sweep, at a clock we choose
        now = time.time()
        assert sweep_expired(store, now) == 0
        assert sweep_expired(store, now + HOUR + 1) == 1  # the upload
        assert sweep_expired(store, now + 2 * HOUR + 60) == 2  # the batch's two files
        for file_id in [short.id, *outputs]:
            assert store.file_record(file_id) is None
            with pytest.raises(openai.NotFoundError) as refused:
                await client.files.retrieve(file_id)
            assert refused.value.body == {
                "message": f"No such File object: {file_id}",
                "type": "invalid_request_error",
                "param": "id",
                "code": None,
            }
            with pytest.raises(openai.NotFoundError):
                await client.files.content(file_id)
        listed = {file.id for file in (await client.files.list()).data}
        assert listed == {kept.id}
        assert (await client.files.content(kept.id)).content == content
        assert (await client.batches.retrieve(batch.id)).output_file_id == batch.output_file_id
        if settings.storage_url is None:
            leftovers = {path.name for path in (settings.output_dir / batch.id).iterdir()}
            assert leftovers <= {"batch.json", "input_file.json"}
