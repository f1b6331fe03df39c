"""``BatchClient`` without a broker: what it publishes, in which order, under which keys.

The lines a ``client.batch(...)`` block adds are tested with its writer, in ``test_writer.py``."""

from __future__ import annotations

import dataclasses

import pytest

from llm_stream.client.batch_client import BatchClient, SubmitError
from llm_stream.client.manifests import build_manifest
from llm_stream.kafka.connection import client_kwargs
from llm_stream.settings import Settings
from tests.unit.client.fakes import CONFIG, FakeProducer
from tests.unit.client.fakes import line as _line


def test_from_settings_keeps_the_connection_and_topic_names() -> None:
    settings = Settings(
        bootstrap_servers="k:9092", requests_topic="r", batches_topic="b", batch_status_topic="s"
    )
    config = BatchClient.from_settings(settings).config
    assert config.connection == client_kwargs(settings)
    assert (config.requests_topic, config.batches_topic, config.batch_status_topic) == (
        "r",
        "b",
        "s",
    )
    assert config.max_message_bytes == settings.max_message_bytes


async def test_submit_publishes_the_manifest_then_every_line_keyed_by_batch_and_custom_id(
    producer: FakeProducer,
) -> None:
    confirmed: list[int] = []
    async with BatchClient(CONFIG) as client:
        handle = await client.submit(
            [_line("a"), _line("b")],
            batch_id="b1",
            endpoint="/v1/completions",
            metadata={"team": "search"},
            on_published=confirmed.append,
        )
    assert handle.batch_id == "b1"
    manifest, *lines = producer.sent
    assert (manifest.topic, manifest.key) == ("batches", "b1")
    assert manifest.value["request_count"] == 2
    assert manifest.value["metadata"] == {"team": "search"}
    assert "model" not in manifest.value  # the lines name none: older aggregators read it
    assert [(s.topic, s.key) for s in lines] == [("req", "b1/a"), ("req", "b1/b")]
    assert [s.value["batch_id"] for s in lines] == ["b1", "b1"]
    assert sum(confirmed) == 2
    assert producer.stopped


async def test_submit_gives_a_new_batch_id_when_none_is_chosen(producer: FakeProducer) -> None:
    async with BatchClient(CONFIG) as client:
        one = await client.submit([_line("a")], endpoint="/v1/completions")
        two = await client.submit([_line("a")], endpoint="/v1/completions")
    assert one.batch_id.startswith("batch_")
    assert one.batch_id != two.batch_id


async def test_submit_refuses_a_stream_shorter_than_the_count_it_announced(
    producer: FakeProducer,
) -> None:
    async with BatchClient(CONFIG) as client:
        with pytest.raises(SubmitError, match="announced 3 lines, 2 were published"):
            await client.submit(
                iter([_line("a"), _line("b")]), batch_id="b1", endpoint="/v1/x", request_count=3
            )


async def test_bad_batch_settings_are_refused_before_anything_is_sent(
    producer: FakeProducer,
) -> None:
    async with BatchClient(CONFIG) as client:
        with pytest.raises(ValueError, match="completion_window"):
            client.batch(endpoint="/v1/completions", completion_window="tomorrow")
        with pytest.raises(ValueError, match="batch_id"):
            await client.submit([_line("a")], batch_id="../etc", endpoint="/v1/completions")
    assert producer.sent == []


async def test_a_completion_window_over_the_configured_longest_is_refused_before_sending(
    producer: FakeProducer,
) -> None:
    hourly = dataclasses.replace(CONFIG, max_completion_window_s=3600)
    async with BatchClient(hourly) as client:
        client.batch(endpoint="/v1/completions", completion_window="60m")
        with pytest.raises(ValueError, match="completion window 61m is longer than 1h"):
            client.batch(endpoint="/v1/completions", completion_window="61m")
        with pytest.raises(ValueError, match="batch_max_completion_window_s"):
            await client.submit([_line("a")], endpoint="/v1/completions", completion_window="2h")
    assert producer.sent == []


def test_the_longest_completion_window_comes_from_settings_three_days_by_default() -> None:
    assert BatchClient.from_settings(Settings()).config.max_completion_window_s == 3 * 86_400
    with pytest.raises(ValueError, match="longer than 3d"):
        build_manifest(
            "b", endpoint="/v1/completions", request_count=1, completion_window="9999999d"
        )
    settings = Settings(batch_max_completion_window_s=7 * 86_400)
    assert BatchClient.from_settings(settings).config.max_completion_window_s == 7 * 86_400


async def test_the_manifest_names_the_first_lines_model_whichever_way_lines_come(
    producer: FakeProducer,
) -> None:
    lines = [{**_line(c), "body": {"model": "tiny-llama"}} for c in ("a", "b")]
    async with BatchClient(CONFIG) as client:
        await client.submit(lines, batch_id="listed", endpoint="/v1/completions")
        await client.submit(
            iter(lines), batch_id="streamed", endpoint="/v1/completions", request_count=2
        )
        async with client.batch(endpoint="/v1/completions", batch_id="written") as batch:
            for line in lines:
                await batch.add(line)
    manifests = {s.key: s.value for s in producer.sent if s.topic == "batches"}
    assert {key: m["model"] for key, m in manifests.items()} == dict.fromkeys(
        ("listed", "streamed", "written"), "tiny-llama"
    )
    streamed = [s.key for s in producer.sent if s.topic == "req" and s.key.startswith("streamed")]
    assert streamed == ["streamed/a", "streamed/b"]  # peeking at the first line lost none


async def test_the_manifest_carries_the_lines_token_estimate_when_they_can_be_counted(
    producer: FakeProducer,
) -> None:
    lines = [{**_line(c), "body": {"model": "tiny-llama", "prompt": "abcdefgh"}} for c in "ab"]
    async with BatchClient(CONFIG) as client:
        await client.submit(lines, batch_id="listed", endpoint="/v1/completions")
        await client.submit(
            iter(lines), batch_id="streamed", endpoint="/v1/completions", request_count=2
        )
        await client.submit(
            iter(lines),
            batch_id="counted",
            endpoint="/v1/completions",
            request_count=2,
            input_tokens={"tiny-llama": 9},
        )
    manifests = {s.key: s.value for s in producer.sent if s.topic == "batches"}
    assert manifests["listed"]["input_tokens"] == {"tiny-llama": 4}
    assert "input_tokens" not in manifests["streamed"]  # a one-pass stream is not read twice
    assert manifests["counted"]["input_tokens"] == {"tiny-llama": 9}
