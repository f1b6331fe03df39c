"""The notifier's command line and what it records for a delivery that never arrived."""

from __future__ import annotations

import orjson
import pytest

from llm_stream.batch.status import BatchStatus
from llm_stream.cli.exit_codes import EXIT_USAGE
from llm_stream.cli.main import main
from llm_stream.notifier.app import failure_record
from llm_stream.notifier.delivery import DeliveryOutcome
from llm_stream.notifier.endpoints import configured_endpoints
from llm_stream.notifier.events import event_of
from llm_stream.settings import Settings
from tests.webhook_receiver import SECRET, batch_in


def test_the_notifier_refuses_to_start_without_an_endpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LLM_STREAM_WEBHOOK_URLS", raising=False)
    assert main(["notifier", "--bootstrap-servers", "127.0.0.1:1"]) == EXIT_USAGE
    assert "no webhook URL is configured" in capsys.readouterr().err


def test_the_notifier_refuses_a_url_without_its_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LLM_STREAM_WEBHOOK_URLS", "https://a.example/h,https://b.example/h")
    monkeypatch.setenv("LLM_STREAM_WEBHOOK_SECRETS", SECRET)
    assert main(["notifier"]) == EXIT_USAGE
    assert "2 webhook URLs but 1 secrets" in capsys.readouterr().err


def test_a_failure_record_carries_the_event_and_no_query_string() -> None:
    settings = Settings(
        webhook_urls=["https://hooks.example/b?token=private"], webhook_secrets=[SECRET]
    )
    event = event_of(batch_in("batch_lost", BatchStatus.FAILED))
    assert event is not None
    outcome = DeliveryOutcome(
        configured_endpoints(settings)[0], event, False, 8, "HTTP 500: " + "x" * 5000
    )
    record = orjson.loads(failure_record(outcome, failed_at=1_760_000_000))
    assert record["event"] == orjson.loads(event.body())
    assert record["url"] == "https://hooks.example/b"
    assert record["attempts"] == 8
    assert record["failed_at"] == 1_760_000_000
    assert len(record["error"]) <= 1000
    assert b"private" not in failure_record(outcome, 0)
