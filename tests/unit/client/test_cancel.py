"""``BatchClient.cancel`` and ``llm-stream cancel`` without a broker: what is published, and
what each kind of batch gets back."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.cli.exit_codes import EXIT_NO_BATCH, EXIT_TOO_LATE_TO_CANCEL, EXIT_USAGE
from llm_stream.cli.main import main
from llm_stream.client import batch_client
from llm_stream.client.batch_client import BatchClient
from llm_stream.client.config import ClientConfig
from llm_stream.contracts import BatchManifest, BatchObject
from tests.unit.client.test_batch_client import CONFIG, FakeProducer

S = BatchStatus
MANIFEST = BatchManifest(
    batch_id="b1", endpoint="/v1/completions", request_count=3, created_at=1_700_000_000
)


def _latest(status: BatchStatus) -> BatchObject:
    reached_at = {} if status is S.VALIDATING else {status: MANIFEST.created_at + 1}
    if status is S.CANCELLED:
        reached_at[S.CANCELLING] = MANIFEST.created_at
    return batch_object(MANIFEST, status, completed=1, reached_at=reached_at)


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> FakeProducer:
    fake = FakeProducer()
    monkeypatch.setattr(batch_client, "new_producer", lambda config: fake)
    return fake


def _view(monkeypatch: pytest.MonkeyPatch, latest: BatchObject | None) -> list[str]:
    """The client's status view knows one batch object (or none); returns the ids asked."""
    asked: list[str] = []

    class OneBatchView:
        def __init__(self, config: ClientConfig) -> None:
            pass

        async def start(self) -> None:
            pass

        async def stop(self) -> None:
            pass

        def watch(self, batch_id: str) -> None:
            asked.append(batch_id)

        async def caught_up(self) -> None:
            pass

        def latest(self, batch_id: str) -> BatchObject | None:
            return latest if latest is not None and latest.id == batch_id else None

    monkeypatch.setattr(batch_client, "BatchStatusView", OneBatchView)
    return asked


@pytest.mark.parametrize("status", [S.VALIDATING, S.IN_PROGRESS])
async def test_cancel_publishes_the_latest_object_as_cancelling_keyed_by_batch_id(
    monkeypatch: pytest.MonkeyPatch, producer: FakeProducer, status: BatchStatus
) -> None:
    latest = _latest(status)
    _view(monkeypatch, latest)
    before = int(time.time())
    async with BatchClient(CONFIG) as client:
        cancelled = await client.cancel("b1")
        handle_cancelled = await client.handle("b1").cancel()
    assert cancelled is not None
    assert cancelled.status is S.CANCELLING
    assert cancelled.cancelling_at is not None
    assert before <= cancelled.cancelling_at <= time.time()
    assert cancelled.request_counts == latest.request_counts
    assert [(s.topic, s.key) for s in producer.sent] == [("status", "b1")] * 2
    assert BatchObject.model_validate(producer.sent[0].value) == cancelled
    assert handle_cancelled is not None
    assert handle_cancelled.status is S.CANCELLING


@pytest.mark.parametrize(
    "status", [S.CANCELLING, S.CANCELLED, S.COMPLETED, S.FAILED, S.EXPIRED, S.FINALIZING]
)
async def test_a_batch_that_cannot_be_cancelled_is_returned_as_it_is(
    monkeypatch: pytest.MonkeyPatch, producer: FakeProducer, status: BatchStatus
) -> None:
    latest = _latest(status)
    _view(monkeypatch, latest)
    async with BatchClient(CONFIG) as client:
        assert await client.cancel("b1") == latest
    assert producer.sent == []


async def test_an_unknown_or_unsafe_batch_is_none_and_nothing_is_published(
    monkeypatch: pytest.MonkeyPatch, producer: FakeProducer
) -> None:
    asked = _view(monkeypatch, None)
    async with BatchClient(CONFIG) as client:
        assert await client.cancel("nobody") is None
        assert await client.cancel("../etc") is None
    assert asked == ["nobody"]  # an unsafe id is not even looked up
    assert producer.sent == []


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (S.IN_PROGRESS, 0),
        (S.VALIDATING, 0),
        (S.CANCELLING, 0),
        (S.CANCELLED, 0),
        (S.COMPLETED, EXIT_TOO_LATE_TO_CANCEL),
        (S.FAILED, EXIT_TOO_LATE_TO_CANCEL),
        (S.EXPIRED, EXIT_TOO_LATE_TO_CANCEL),
    ],
)
def test_the_cancel_command_prints_the_batch_and_says_how_it_went(
    monkeypatch: pytest.MonkeyPatch,
    producer: FakeProducer,
    capsys: pytest.CaptureFixture[str],
    status: BatchStatus,
    code: int,
) -> None:
    _view(monkeypatch, _latest(status))
    assert main(["cancel", "b1"]) == code
    printed: dict[str, Any] = orjson.loads(capsys.readouterr().out)
    expected = S.CANCELLING if status in (S.IN_PROGRESS, S.VALIDATING) else status
    assert printed["status"] == expected
    assert printed["id"] == "b1"


def test_the_cancel_command_without_a_batch_or_with_a_bad_id(
    monkeypatch: pytest.MonkeyPatch, producer: FakeProducer, capsys: pytest.CaptureFixture[str]
) -> None:
    _view(monkeypatch, None)
    assert main(["cancel", "b1"]) == EXIT_NO_BATCH
    assert "no batch" in capsys.readouterr().err
    assert main(["cancel", "../etc"]) == EXIT_USAGE
    assert "unsafe batch id" in capsys.readouterr().err
    assert producer.sent == []


def test_the_cancel_help_documents_its_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["cancel", "--help"])
    out = capsys.readouterr().out
    for code in (0, EXIT_NO_BATCH, EXIT_USAGE, EXIT_TOO_LATE_TO_CANCEL):
        assert f"\n  {code}  " in out
    assert "batch_cancelled" in out
