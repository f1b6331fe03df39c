"""``llm-stream status``: ``--wait`` stops on every terminal status and says which in its code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import orjson
import pytest

from llm_stream.batch.status import TERMINAL_STATUSES
from llm_stream.cli.exit_codes import (
    EXIT_CODES,
    EXIT_NO_BATCH,
    EXIT_NOT_TERMINAL,
    EXIT_USAGE,
)
from llm_stream.cli.main import main
from llm_stream.client import batch_client
from llm_stream.client.batch_client import BatchClient
from llm_stream.client.config import ClientConfig
from llm_stream.contracts import BatchObject
from llm_stream.settings import Settings
from tests.unit.cli.batches import batch_in as _batch


def _fake_view(
    monkeypatch: pytest.MonkeyPatch, statuses: list[str | None], change_every: float = 0.0
) -> list[str]:
    """The client's status view answers ``statuses`` in turn, one more per change (the last one
    for ever), a change every ``change_every`` seconds; returns the reads."""
    calls: list[str] = []
    answers: Iterator[str | None] = iter(statuses)
    last: list[str | None] = [None]

    class ScriptedView:
        def __init__(self, config: ClientConfig) -> None:
            self.config = config

        async def start(self) -> None:
            pass

        async def stop(self) -> None:
            pass

        def watch(self, batch_id: str) -> None:
            pass

        async def caught_up(self) -> None:
            pass

        async def changed(self) -> None:
            await asyncio.sleep(change_every)

        def latest(self, batch_id: str) -> BatchObject | None:
            calls.append(batch_id)
            last[0] = next(answers, last[0])
            return None if last[0] is None else _batch(last[0])

    monkeypatch.setattr(batch_client, "BatchStatusView", ScriptedView)
    return calls


async def _wait(batch_id: str, within: float) -> BatchObject | None:
    async with BatchClient.from_settings(Settings()) as client:
        return await client.wait(batch_id, within)


@pytest.mark.parametrize("final", sorted(TERMINAL_STATUSES))
def test_wait_stops_at_the_first_terminal_status(
    monkeypatch: pytest.MonkeyPatch, final: str
) -> None:
    calls = _fake_view(monkeypatch, [None, "validating", "in_progress", final, "completed"])
    batch = asyncio.run(_wait("batch_1", within=60))
    assert batch is not None
    assert batch.status == final
    assert len(calls) == 4


def test_wait_gives_up_after_its_timeout_with_the_last_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _fake_view(monkeypatch, ["in_progress"], change_every=0.05)
    started = time.monotonic()
    batch = asyncio.run(_wait("batch_1", within=0.3))
    assert 0.3 <= time.monotonic() - started < 2
    assert batch is not None
    assert batch.status == "in_progress"
    assert len(calls) >= 2


def test_wait_for_a_batch_that_never_appears_returns_none(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_view(monkeypatch, [None], change_every=0.02)
    assert asyncio.run(_wait("b", within=0.1)) is None


def test_status_wait_returns_at_once_on_expiry_with_its_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_view(monkeypatch, ["expired"])
    started = time.monotonic()
    assert main(["status", "batch_1", "--wait", "600"]) == EXIT_CODES["expired"]
    assert time.monotonic() - started < 5
    assert orjson.loads(capsys.readouterr().out)["status"] == "expired"


def test_status_without_wait_prints_and_exits_zero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_view(monkeypatch, ["in_progress"])
    assert main(["status", "batch_1"]) == 0
    assert orjson.loads(capsys.readouterr().out)["status"] == "in_progress"


def test_status_of_an_unknown_batch_exits_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_view(monkeypatch, [None])
    assert main(["status", "batch_1", "--wait", "0"]) == EXIT_NO_BATCH
    assert "no batch" in capsys.readouterr().err


def test_status_refuses_an_unsafe_batch_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "../etc"]) == EXIT_USAGE
    assert "unsafe batch id" in capsys.readouterr().err


def test_status_help_documents_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["status", "--help"])
    out = capsys.readouterr().out
    assert "exit codes:" in out
    for code in (*EXIT_CODES.values(), EXIT_NO_BATCH, EXIT_USAGE, EXIT_NOT_TERMINAL):
        assert f"\n  {code}  " in out
    for status in TERMINAL_STATUSES - {"completed"}:
        assert f"batch {status}" in out or f"batch was {status}" in out
