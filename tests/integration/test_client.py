"""The client library against a real broker: submit, retrieve, wait, the async producer, and
the status view that follows the compacted batch-status topic instead of rescanning it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import TERMINAL_STATUSES, BatchStatus
from llm_stream.cli.main import main
from llm_stream.client import BatchClient, BatchStatusView, ClientConfig
from llm_stream.contracts import BatchManifest
from llm_stream.files.store import LocalFileStore
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from tests.kafka_helpers import collect, publish

pytestmark = pytest.mark.broker


def _line(custom_id: str) -> dict[str, object]:
    body = {"prompt": custom_id}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/completions", "body": body}


async def _publish_status(settings: Settings, batch_id: str, status: BatchStatus) -> None:
    """What the aggregator publishes: the batch object, keyed by batch id."""
    manifest = BatchManifest(batch_id=batch_id, endpoint="/v1/completions", request_count=2)
    reached = {} if status is BatchStatus.VALIDATING else {status: int(time.time())}
    value = orjson.dumps(batch_object(manifest, status, reached_at=reached).model_dump(mode="json"))
    await publish(
        settings.bootstrap_servers, settings.batch_status_topic, [value], batch_id.encode()
    )


@pytest.fixture
async def settings(isolated_settings: Settings) -> Settings:
    ready = isolated_settings.with_overrides(topic_partitions=4)
    await ensure_topics(ready)
    return ready


async def test_submit_returns_a_handle_that_sees_validating_then_the_latest_status(
    settings: Settings,
) -> None:
    async with BatchClient.from_settings(settings) as client:
        handle = await client.submit(
            [_line("a"), _line("b")], endpoint="/v1/completions", metadata={"team": "search"}
        )
        validating = await handle.retrieve()
        assert validating is not None
        assert (validating.id, validating.status) == (handle.batch_id, BatchStatus.VALIDATING)
        assert validating.request_counts.total == 2
        assert validating.metadata == {"team": "search"}

        await _publish_status(settings, handle.batch_id, BatchStatus.IN_PROGRESS)
        await _publish_status(settings, handle.batch_id, BatchStatus.COMPLETED)
        latest = await handle.retrieve()
        assert latest is not None
        assert latest.status == BatchStatus.COMPLETED
        assert await client.retrieve("never_submitted") is None

    requests = await collect(
        settings.bootstrap_servers, settings.requests_topic, lambda got: len(got) >= 2, within=20
    )
    assert sorted(r["custom_id"] for r in requests) == ["a", "b"]
    assert {r["batch_id"] for r in requests} == {handle.batch_id}


async def test_wait_returns_on_every_terminal_status(settings: Settings) -> None:
    finals = sorted(TERMINAL_STATUSES)
    async with BatchClient.from_settings(settings) as client:
        started = time.monotonic()
        waits = [asyncio.create_task(client.wait(f"b_{final}", 60)) for final in finals]
        await asyncio.sleep(1)  # every wait is following before anything is published
        assert not any(task.done() for task in waits)
        for final in finals:
            await _publish_status(settings, f"b_{final}", BatchStatus.IN_PROGRESS)
            await _publish_status(settings, f"b_{final}", final)
        batches = await asyncio.gather(*waits)
        assert time.monotonic() - started < 30
        assert [batch.status if batch else None for batch in batches] == finals

        await _publish_status(settings, "b_running", BatchStatus.IN_PROGRESS)
        started = time.monotonic()
        running = await client.wait("b_running", 0.5)
        assert running is not None
        assert running.status == BatchStatus.IN_PROGRESS
        assert 0.5 <= time.monotonic() - started < 10


async def test_the_async_producer_publishes_lines_then_the_manifest_with_their_count(
    settings: Settings,
) -> None:
    async with (
        BatchClient.from_settings(settings) as client,
        BatchClient.from_settings(settings) as reader,
    ):
        async with client.batch(endpoint="/v1/completions", batch_id="streamed") as batch:
            for custom_id in ("a", "b", "c"):
                await batch.add(_line(custom_id))
            requests = await collect(
                settings.bootstrap_servers,
                settings.requests_topic,
                lambda got: len(got) >= 3,
                within=20,
            )
            assert sorted(r["custom_id"] for r in requests) == ["a", "b", "c"]
            assert await reader.retrieve("streamed") is None  # no manifest before the end
        after = await batch.handle.retrieve()
    assert after is not None
    assert after.status == BatchStatus.VALIDATING
    assert after.request_counts.total == 3


async def test_the_status_view_follows_updates_without_rereading_the_partition(
    isolated_settings: Settings,
) -> None:
    settings = isolated_settings.with_overrides(topic_partitions=1)
    await ensure_topics(settings)
    for i in range(20):  # other batches in the same partition
        await _publish_status(settings, f"other_{i}", BatchStatus.IN_PROGRESS)
    async with BatchStatusView(ClientConfig.from_settings(settings)) as view:
        view.watch("followed")
        await view.caught_up()
        assert view.latest("followed") is None
        read_at_start = view.records_read
        assert read_at_start == 20

        await _publish_status(settings, "followed", BatchStatus.IN_PROGRESS)
        await asyncio.wait_for(_until_status(view, "followed", BatchStatus.IN_PROGRESS), 20)
        for _ in range(5):
            await view.caught_up()
        assert view.records_read == read_at_start + 1

        await _publish_status(settings, "followed", BatchStatus.FAILED)
        await asyncio.wait_for(_until_status(view, "followed", BatchStatus.FAILED), 20)
        assert view.records_read == read_at_start + 2


async def _until_status(view: BatchStatusView, batch_id: str, status: BatchStatus) -> None:
    while (batch := view.latest(batch_id)) is None or batch.status != status:
        await view.changed()


async def test_a_view_of_every_partition_knows_every_batch(settings: Settings) -> None:
    ids = [f"batch_{i}" for i in range(12)]
    for batch_id in ids:
        await _publish_status(settings, batch_id, BatchStatus.IN_PROGRESS)
    async with BatchStatusView(ClientConfig.from_settings(settings)) as view:
        view.follow_all()
        await view.caught_up()
        assert view.batch_ids() == sorted(ids)
        assert view.records_read == len(ids)


def test_the_cli_submits_and_reports_through_the_client(
    isolated_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for field in (
        "bootstrap_servers",
        "requests_topic",
        "batches_topic",
        "batch_status_topic",
        "output_dir",
    ):
        monkeypatch.setenv(f"LLM_STREAM_{field.upper()}", str(getattr(isolated_settings, field)))
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(orjson.dumps(_line(c)) + b"\n" for c in ("a", "b")))
    assert main(["submit", str(path), "--batch-id", "cli_batch"]) == 0
    assert capsys.readouterr().out == "cli_batch\n"
    # The input is kept in the file store, linked to the batch, for a resume.
    store = LocalFileStore(isolated_settings.output_dir)
    kept = store.linked_input("cli_batch")
    assert kept is not None
    assert b"".join(store.read_chunks(kept)) == path.read_bytes()
    record = store.file_record(kept)
    assert record is not None
    assert (record.filename, record.purpose) == ("in.jsonl", "batch")
    monkeypatch.setenv("LLM_STREAM_SUBMIT_KEEP_INPUT", "false")
    assert main(["submit", str(path), "--batch-id", "cli_batch_unkept"]) == 0
    assert store.linked_input("cli_batch_unkept") is None
    capsys.readouterr()

    assert main(["status", "cli_batch"]) == 0
    assert orjson.loads(capsys.readouterr().out)["status"] == "validating"

    asyncio.run(_publish_status(isolated_settings, "cli_batch", BatchStatus.EXPIRED))
    assert main(["status", "cli_batch", "--wait", "30"]) == 5
    assert orjson.loads(capsys.readouterr().out)["status"] == "expired"
