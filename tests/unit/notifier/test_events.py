"""The event of a terminal batch: OpenAI's shape, a stable id, the time the status was reached."""

from __future__ import annotations

import orjson
import pytest
from openai.types.webhooks import (
    BatchCancelledWebhookEvent,
    BatchCompletedWebhookEvent,
    BatchExpiredWebhookEvent,
    BatchFailedWebhookEvent,
)

from llm_stream.batch.status import TERMINAL_STATUSES, BatchStatus
from llm_stream.notifier.events import EVENT_TYPES, event_id, event_of
from tests.webhook_receiver import batch_in

OPENAI_EVENT_CLASSES = {
    "batch.completed": BatchCompletedWebhookEvent,
    "batch.failed": BatchFailedWebhookEvent,
    "batch.expired": BatchExpiredWebhookEvent,
    "batch.cancelled": BatchCancelledWebhookEvent,
}


def test_every_terminal_status_has_an_openai_event_type() -> None:
    assert set(EVENT_TYPES) == TERMINAL_STATUSES
    assert set(EVENT_TYPES.values()) == set(OPENAI_EVENT_CLASSES)


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_the_body_is_openais_event_of_the_batch(status: BatchStatus) -> None:
    event = event_of(batch_in("batch_a", status, at=1_760_000_000))
    assert event is not None
    body = orjson.loads(event.body())
    assert body == {
        "id": event.id,
        "object": "event",
        "type": f"batch.{status.value}",
        "created_at": 1_760_000_000,
        "data": {"id": "batch_a"},
    }
    parsed = OPENAI_EVENT_CLASSES[body["type"]].model_validate(body)
    assert parsed.model_dump(exclude_none=True) == body


@pytest.mark.parametrize(
    "status",
    [BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING, "cancelling"],
)
def test_a_batch_under_way_has_no_event(status: BatchStatus) -> None:
    assert event_of(batch_in("batch_a", BatchStatus(status))) is None


def test_the_id_is_the_same_for_the_same_batch_and_type_only() -> None:
    first = event_of(batch_in("batch_a", BatchStatus.COMPLETED, at=1))
    again = event_of(batch_in("batch_a", BatchStatus.COMPLETED, at=1))
    assert first is not None
    assert again is not None
    assert first.id == again.id
    assert first.body() == again.body()
    assert first.id.startswith("evt_")
    assert len(first.id) == 36
    assert event_id("batch_a", "batch.failed") != first.id
    assert event_id("batch_b", "batch.completed") != first.id
