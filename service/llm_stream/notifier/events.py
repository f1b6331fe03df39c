"""OpenAI's webhook event of a batch that reached a terminal status.

The event is a pure function of the batch object: its id is derived from the batch id and the
event type, and its ``created_at`` is the time the batch reached that status. A redelivery,
after a retry, a restart or a second notifier, therefore carries the very same body and id,
and a receiver deduplicates by the id (Standard Webhooks' ``webhook-id``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import orjson

from llm_stream.batch.objects import timestamp_field
from llm_stream.batch.status import BatchStatus
from llm_stream.contracts import BatchObject

#: OpenAI's event type of each terminal status.
EVENT_TYPES: Mapping[BatchStatus, str] = MappingProxyType(
    {
        BatchStatus.COMPLETED: "batch.completed",
        BatchStatus.FAILED: "batch.failed",
        BatchStatus.EXPIRED: "batch.expired",
        BatchStatus.CANCELLED: "batch.cancelled",
    }
)

#: Fixed namespace of the event ids: changing it would make every id new to receivers.
_EVENT_ID_NAMESPACE = uuid.UUID("0b6f4c1e-5a77-4c58-9d1e-8f2f6f0f2a61")


def event_id(batch_id: str, event_type: str) -> str:
    """``evt_`` and 32 hex digits, the same for the same batch and type in every process."""
    return f"evt_{uuid.uuid5(_EVENT_ID_NAMESPACE, f'{batch_id}/{event_type}').hex}"


@dataclass(frozen=True, slots=True)
class BatchEvent:
    """One ``batch.*`` event, as OpenAI delivers it."""

    id: str
    type: str
    created_at: int
    batch_id: str

    def body(self) -> bytes:
        """The delivered JSON; the bytes are signed, so they are built in one place."""
        return orjson.dumps(
            {
                "id": self.id,
                "object": "event",
                "type": self.type,
                "created_at": self.created_at,
                "data": {"id": self.batch_id},
            }
        )


def event_of(batch: BatchObject) -> BatchEvent | None:
    """The event of a terminal batch object; None for a batch still under way."""
    event_type = EVENT_TYPES.get(batch.status)
    if event_type is None:
        return None
    reached_at = getattr(batch, timestamp_field(batch.status))
    return BatchEvent(
        id=event_id(batch.id, event_type),
        type=event_type,
        created_at=reached_at if reached_at is not None else batch.created_at,
        batch_id=batch.id,
    )
