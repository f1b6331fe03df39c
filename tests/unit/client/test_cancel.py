"""``BatchClient.cancel`` and ``llm-stream cancel`` without a broker (``FakeBatchClient``): what
is published, and what each kind of batch gets back."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from llm_stream.batch.status import BatchStatus
from llm_stream.cli import commands
from llm_stream.cli.exit_codes import EXIT_NO_BATCH, EXIT_TOO_LATE_TO_CANCEL, EXIT_USAGE
from llm_stream.cli.main import main
from llm_stream.client import FakeBatchClient
from llm_stream.contracts import BatchManifest, BatchObject
from llm_stream.settings import Settings

S = BatchStatus
MANIFEST = BatchManifest(
    batch_id="b1", endpoint="/v1/completions", request_count=3, created_at=1_700_000_000
)
STATUS_TOPIC = Settings.model_fields["batch_status_topic"].default


def _client_with(status: BatchStatus | None) -> FakeBatchClient:
    """A fake client that knows batch b1 (3 lines, 1 done) in ``status``, or no batch."""
    client = FakeBatchClient()
    if status is not None:
        client.add_submitted(MANIFEST)
        if status is not S.VALIDATING:
            client.set_status("b1", status, completed=1)
    return client


def _cancels(client: FakeBatchClient) -> list[BatchObject]:
    """The cancelling objects the client published."""
    return [
        BatchObject.model_validate_json(record.value)
        for record in client.sent
        if record.topic == STATUS_TOPIC and b'"cancelling"' in record.value
    ]


@pytest.mark.parametrize("status", [S.VALIDATING, S.IN_PROGRESS])
async def test_cancel_publishes_the_latest_object_as_cancelling_keyed_by_batch_id(
    status: BatchStatus,
) -> None:
    client = _client_with(status)
    latest = await client.retrieve("b1")
    assert latest is not None
    before = int(time.time())
    async with client:
        cancelled = await client.cancel("b1")
        again = await client.handle("b1").cancel()  # already cancelling: as it is
    assert cancelled is not None
    assert cancelled.status is S.CANCELLING
    assert cancelled.cancelling_at is not None
    assert before <= cancelled.cancelling_at <= time.time()
    assert cancelled.request_counts == latest.request_counts
    assert _cancels(client) == [cancelled]
    assert [r.key for r in client.sent if r.topic == STATUS_TOPIC][-1] == "b1"
    assert again == cancelled


@pytest.mark.parametrize(
    "status", [S.CANCELLING, S.CANCELLED, S.COMPLETED, S.FAILED, S.EXPIRED, S.FINALIZING]
)
async def test_a_batch_that_cannot_be_cancelled_is_returned_as_it_is(status: BatchStatus) -> None:
    client = _client_with(status)
    latest = await client.retrieve("b1")
    sent_before = len(client.sent)
    async with client:
        assert await client.cancel("b1") == latest
    assert len(client.sent) == sent_before


async def test_an_unknown_or_unsafe_batch_is_none_and_nothing_is_published() -> None:
    client = _client_with(None)
    async with client:
        assert await client.cancel("nobody") is None
        assert await client.cancel("../etc") is None
    assert client.sent == []


@pytest.fixture
def command_client(monkeypatch: pytest.MonkeyPatch) -> list[FakeBatchClient]:
    """The client ``llm-stream cancel`` makes: the fake a test puts first in the list."""
    clients: list[FakeBatchClient] = []
    monkeypatch.setattr(commands.BatchClient, "from_settings", lambda settings: clients[0])
    return clients


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
    command_client: list[FakeBatchClient],
    capsys: pytest.CaptureFixture[str],
    status: BatchStatus,
    code: int,
) -> None:
    command_client.append(_client_with(status))
    assert main(["cancel", "b1"]) == code
    printed: dict[str, Any] = orjson.loads(capsys.readouterr().out)
    expected = S.CANCELLING if status in (S.IN_PROGRESS, S.VALIDATING) else status
    assert printed["status"] == expected
    assert printed["id"] == "b1"


def test_the_cancel_command_without_a_batch_or_with_a_bad_id(
    command_client: list[FakeBatchClient], capsys: pytest.CaptureFixture[str]
) -> None:
    command_client.append(_client_with(None))
    assert main(["cancel", "b1"]) == EXIT_NO_BATCH
    assert "no batch" in capsys.readouterr().err
    assert main(["cancel", "../etc"]) == EXIT_USAGE
    assert "unsafe batch id" in capsys.readouterr().err
    assert command_client[0].sent == []


def test_the_cancel_help_documents_its_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["cancel", "--help"])
    out = capsys.readouterr().out
    for code in (0, EXIT_NO_BATCH, EXIT_USAGE, EXIT_TOO_LATE_TO_CANCEL):
        assert f"\n  {code}  " in out
    assert "batch_cancelled" in out
