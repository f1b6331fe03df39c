"""Turn a raw Kafka record into a request, an attributable error, or a dead letter.

A record that names a valid ``batch_id`` and ``custom_id`` is always answered with a result line
(an error line when the rest of it breaks a rule of ``request_line``); only a record that cannot
be attributed to a batch request goes to the dead-letter topic, since no output file could hold
its answer. Serving rules (method, endpoint, streaming) are left to the engine, which answers
them as vLLM's server would.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

import pydantic

from llm_stream.batch import request_line
from llm_stream.batch.error_bodies import error_response
from llm_stream.batch.request_line import Problem, Stage
from llm_stream.contracts import RequestMessage, ResponseData


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
    status: HTTPStatus = HTTPStatus.BAD_REQUEST

    @property
    def response(self) -> ResponseData:
        """The error line's response, as vLLM's server would answer (400, or 413 when too big)."""
        return error_response(self.status, self.message)


ParsedRecord = RequestMessage | InvalidRequest | DeadLetter

#: What a single request (request/reply, ``worker.replies``) is parsed under: it has no batch,
#: and its ``custom_id`` is optional.
SINGLE_REQUEST_BATCH = "single-request"
NO_CUSTOM_ID = "-"


def _describe(error: pydantic.ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in item['loc']) or 'line'}: {item['msg']}"
        for item in error.errors(include_url=False, include_input=False)
    ]
    return request_line.INVALID_LINE + "; ".join(parts)


def parse_record(
    value: bytes | None,
    *,
    max_bytes: int = request_line.DEFAULT_MAX_RECORD_BYTES,
    single: bool = False,
) -> ParsedRecord:
    """Judge one record by ``request_line``'s rules; never raises, whatever the bytes.

    ``max_bytes`` is the deployment's ``Settings.max_message_bytes``; ``single``: the record
    asks for a reply, so it needs no ``batch_id`` (one it names is not used) nor ``custom_id``.
    """
    if value is None:
        return DeadLetter("empty message (tombstone)")
    document = request_line.decode(value)
    if isinstance(document, Problem):
        return DeadLetter(document.message)
    if single:
        document = {"custom_id": NO_CUSTOM_ID, **document, "batch_id": SINGLE_REQUEST_BATCH}
    problems = request_line.check_record(document, max_bytes=max_bytes, serving=False)
    unattributable = [p.message for p in problems if p.stage is Stage.ATTRIBUTION]
    if unattributable:
        return DeadLetter("; ".join(unattributable))
    batch_id, custom_id = document["batch_id"], document["custom_id"]
    if problems:  # the serving rules are the engine's to answer
        response = request_line.answer(problems)
        message = request_line.error_message(response)
        return InvalidRequest(batch_id, custom_id, message, HTTPStatus(response.status_code))
    try:
        return RequestMessage.model_validate(document)
    except pydantic.ValidationError as error:  # a rule the checks above missed: still answered
        return InvalidRequest(batch_id, custom_id, _describe(error))
