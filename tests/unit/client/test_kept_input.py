"""A batch submitted through the library keeps its lines in the file store as its input, where
``resume`` reads them: whole on success, nothing on a failed block, and a store that refuses
costs the submit nothing but resumability."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from llm_stream.client.batch_client import BatchClient
from llm_stream.client.kept_input import InputKeeping
from llm_stream.files.store import LocalFileStore
from llm_stream.settings import Settings
from tests.unit.client.fakes import CONFIG, FakeProducer
from tests.unit.client.fakes import line as _line


def _kept_lines(store: LocalFileStore, batch_id: str) -> list[dict[str, Any]]:
    upload = store.linked_input(batch_id)
    assert upload is not None, "the batch's input was not kept"
    with store.local_copy(upload) as path:
        return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture
def store(tmp_path: Path) -> LocalFileStore:
    return LocalFileStore(tmp_path)


async def test_submit_keeps_the_lines_as_published(
    producer: FakeProducer, store: LocalFileStore
) -> None:
    lines = [_line(custom_id) for custom_id in ("a", "b", "c")]
    async with BatchClient(CONFIG, InputKeeping(lambda: store, 3600)) as client:
        await client.submit(iter(lines), batch_id="k1", endpoint="/v1/completions", request_count=3)
    assert _kept_lines(store, "k1") == lines
    upload = store.linked_input("k1")
    assert upload is not None
    record = store.file_record(upload)
    assert record is not None
    assert record.expires_at == record.created_at + 3600


async def test_a_caller_that_kept_its_own_file_keeps_nothing_more(
    producer: FakeProducer, store: LocalFileStore
) -> None:
    async with BatchClient(CONFIG, InputKeeping(lambda: store, None)) as client:
        await client.submit([_line("a")], batch_id="k2", endpoint="/v1/x", keep_input=False)
    assert store.linked_input("k2") is None


async def test_the_writer_keeps_a_clean_block_and_nothing_of_a_failed_one(
    producer: FakeProducer, store: LocalFileStore
) -> None:
    async with BatchClient(CONFIG, InputKeeping(lambda: store, None)) as client:
        async with client.batch(endpoint="/v1/completions", batch_id="w1") as batch:
            await batch.add(_line("a"))
            await batch.add(_line("b"))

        async def fill_then_fail() -> None:
            async with client.batch(endpoint="/v1/completions", batch_id="w2") as failing:
                await failing.add(_line("a"))
                raise KeyError("upstream failed")

        with pytest.raises(KeyError):
            await fill_then_fail()
    assert [line["custom_id"] for line in _kept_lines(store, "w1")] == ["a", "b"]
    assert store.linked_input("w2") is None


async def test_a_store_that_refuses_leaves_the_batch_submitted_and_unresumable(
    producer: FakeProducer, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse() -> LocalFileStore:
        raise PermissionError("read-only store")

    async with BatchClient(CONFIG, InputKeeping(refuse, None)) as client:
        handle = await client.submit([_line("a")], batch_id="k3", endpoint="/v1/completions")
    assert handle.batch_id == "k3"
    assert producer.sent[-1].key == "k3/a"
    assert "resume is refused" in caplog.text


def test_from_settings_keeps_inputs_unless_told_not_to(tmp_path: Path) -> None:
    assert BatchClient.from_settings(Settings(output_dir=tmp_path)).keeping is not None
    settings = Settings(output_dir=tmp_path, submit_keep_input=False)
    assert BatchClient.from_settings(settings).keeping is None
