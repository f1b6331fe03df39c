"""Turn a raw Kafka record into a request, an attributable error, or a dead letter.

A record that names a valid ``batch_id`` and ``custom_id`` is always answered with a result line
(an error line when the rest of it is malformed); only a record that cannot be attributed to a
batch request goes to the dead-letter topic, since no output file could hold its answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pydantic

from service.contracts import CustomId, RequestMessage, is_safe_batch_id

_custom_id_adapter: pydantic.TypeAdapter[str] = pydantic.TypeAdapter(CustomId)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The record cannot be answered in any batch's files."""

    reason: str


@dataclass(frozen=True, slots=True)
class InvalidRequest:
    """The record belongs to a batch request but is not a valid request line."""

    batch_id: str
    custom_id: str
    message: str


ParsedRecord = RequestMessage | InvalidRequest | DeadLetter


def _describe(error: pydantic.ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in item['loc']) or 'line'}: {item['msg']}"
        for item in error.errors(include_url=False)
    ]
    return "Invalid batch request line: " + "; ".join(parts)


def parse_record(value: bytes | None) -> ParsedRecord:
    if value is None:
        return DeadLetter("empty message (tombstone)")
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        return DeadLetter(f"message is not JSON: {error}")
    if not isinstance(document, dict):
        return DeadLetter(f"message is JSON {type(document).__name__}, not an object")
    batch_id, custom_id = document.get("batch_id"), document.get("custom_id")
    if not isinstance(batch_id, str) or not is_safe_batch_id(batch_id):
        return DeadLetter(f"missing or unsafe batch_id: {batch_id!r}")
    try:
        custom_id = _custom_id_adapter.validate_python(custom_id, strict=True)
    except pydantic.ValidationError:
        return DeadLetter(f"missing or invalid custom_id: {custom_id!r}")
    try:
        return RequestMessage.model_validate(document)
    except pydantic.ValidationError as error:
        return InvalidRequest(batch_id, custom_id, _describe(error))
