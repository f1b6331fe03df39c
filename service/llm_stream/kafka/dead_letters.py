"""What a dead letter carries: enough to find and replay the record, never more than fits.

The dead-letter topic has the same message size limit as every other topic, and a record is
dead-lettered precisely because it is unusual: a value that would not fit is replaced by a
reference (topic/partition/offset), a long key is left out, and the reason is truncated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from llm_stream.protocols import IncomingRecord

MAX_REASON_CHARS = 1000
MAX_KEY_BYTES = 1024
#: Room kept for the record's own overhead and our headers.
_HEADROOM_BYTES = 8192

ERROR_HEADER = "x-llm-stream-error"
SOURCE_HEADER = "x-llm-stream-source"
OMITTED_HEADER = "x-llm-stream-value-omitted"


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    value: bytes | None
    key: bytes | None
    headers: Mapping[str, str]


def truncate(text: str, limit: int = MAX_REASON_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}... ({len(text)} characters in all)"


def dead_letter_of(record: IncomingRecord, reason: str, max_message_bytes: int) -> DeadLetterRecord:
    """The dead letter of ``record``: its value and key when they fit, else a reference."""
    headers = {
        ERROR_HEADER: truncate(reason),
        SOURCE_HEADER: f"{record.topic}/{record.partition}/{record.offset}",
    }
    value = record.value
    if value is not None and len(value) > max_message_bytes - _HEADROOM_BYTES:
        headers[OMITTED_HEADER] = f"{len(value)} bytes; read it at {headers[SOURCE_HEADER]}"
        value = None
    key = record.key if record.key is not None and len(record.key) <= MAX_KEY_BYTES else None
    return DeadLetterRecord(value, key, headers)
