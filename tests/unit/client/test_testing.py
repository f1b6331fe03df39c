"""``FakeBatchClient``: what a library user's tests get. The client's own rules hold (bad and
duplicate lines refused, cancels only where the status machine allows), and a test can play
the service's part."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llm_stream import BatchStatus, InvalidLineError, LlmStreamError
from llm_stream.client import BatchClient, FakeBatchClient


def _line(custom_id: str) -> dict[str, Any]:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


async def _summarise(client: BatchClient, texts: list[str]) -> str:
    """Code under test, as a user writes it: submit, wait, report."""
    handle = await client.submit(
        [_line(f"t{n}") for n in range(len(texts))], endpoint="/v1/chat/completions"
    )
    batch = await handle.wait(timeout=5)
    assert batch is not None
    return f"{batch.status}: {batch.request_counts.completed}/{batch.request_counts.total}"


async def test_code_under_test_submits_and_sees_the_batch_the_test_finishes() -> None:
    client = FakeBatchClient()
    running = asyncio.create_task(_summarise(client, ["a", "b", "c"]))
    submitted = await client.submitted()
    batch_id = submitted.batch_id
    waiting = await client.retrieve(batch_id)
    assert waiting is not None
    assert waiting.status is BatchStatus.VALIDATING
    client.set_status(batch_id, BatchStatus.COMPLETED, completed=2, failed=1)
    assert await running == "completed: 2/3"
    assert client.manifest(batch_id) == submitted
    assert (submitted.request_count, submitted.model) == (3, "m")
    assert [line["custom_id"] for line in client.lines(batch_id)] == ["t0", "t1", "t2"]
    assert {line["batch_id"] for line in client.lines(batch_id)} == {batch_id}


async def test_the_fake_refuses_what_the_client_refuses() -> None:
    async with FakeBatchClient() as client:
        async with client.batch(endpoint="/v1/chat/completions") as batch:
            await batch.add(_line("same"))
            with pytest.raises(InvalidLineError, match="custom_id"):
                await batch.add(_line("same"))
            assert len(client.sent) == 1  # the first line only
        assert client.manifest(batch.batch_id) is not None
        client.sent.clear()  # a copy: the fake's records stay
        assert len(client.sent) == 2
        with pytest.raises(LlmStreamError):  # every error of ours under one base
            async with client.batch(endpoint="/v1/chat/completions"):
                pass


async def test_a_cancel_is_published_and_a_finished_batch_is_not_cancelled() -> None:
    client = FakeBatchClient()
    handle = await client.submit([_line("a")], endpoint="/v1/chat/completions")
    cancelling = await handle.cancel()
    assert cancelling is not None
    assert cancelling.status is BatchStatus.CANCELLING
    assert (await handle.retrieve()) == cancelling
    other = await client.submit([_line("b")], endpoint="/v1/chat/completions")
    finished = client.set_status(other.batch_id, BatchStatus.COMPLETED)
    assert await other.cancel() == finished  # too late: returned as it is
    assert await client.retrieve("batch_nobody") is None


async def test_waiting_on_a_batch_nobody_finishes_returns_the_latest_after_the_timeout() -> None:
    client = FakeBatchClient()
    handle = await client.submit([_line("a")], endpoint="/v1/chat/completions")
    latest = await handle.wait(timeout=0.05)
    assert latest is not None
    assert latest.status is BatchStatus.VALIDATING


def test_a_status_for_a_batch_never_submitted_is_a_mistake_in_the_test() -> None:
    with pytest.raises(LookupError, match="not submitted"):
        FakeBatchClient().set_status("batch_x", BatchStatus.COMPLETED)
