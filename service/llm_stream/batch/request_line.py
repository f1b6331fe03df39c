"""What a batch request line is: the one rule set that ``submit``, ``run-batch``, the worker and
the engine apply, so that no line one of them refuses is accepted by another.

Rules come in stages, judged in this order; the earliest broken stage decides the answer:

- attribution: ``custom_id`` (and, on the wire, ``batch_id``). Without them no batch file can
  hold an answer: the worker dead-letters the record, ``submit`` and ``run-batch`` refuse the line.
- size: the line as written must fit ``batch_max_line_bytes`` (judged while it is read, before
  it is parsed), and the request record (the line plus ``batch_id``) one Kafka message: 413.
- shape: the fields and their types: 400, "Invalid batch request line".
- serving: POST, a supported endpoint, no streaming: vLLM's server answers 405, 404 or 400.

Lines are decoded and sized with orjson, the codec that publishes them, so a line is judged as
it will travel: no NaN, nesting up to 1024 levels read, but only 254 written (deeper is a shape
problem, or ``submit`` would fail half way through publishing).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from http import HTTPStatus
from typing import Any, Final

import orjson

from llm_stream.batch.error_bodies import (
    describe,
    error_response,
    method_not_allowed,
    streaming_refused,
    unsupported_endpoint,
)
from llm_stream.contracts import (
    MAX_MODEL_NAME_LENGTH,
    SUPPORTED_ENDPOINTS,
    ResponseData,
    is_safe_batch_id,
)
from llm_stream.settings import Settings

#: The fields of an OpenAI batch input line; a record on the wire adds ``batch_id``.
LINE_FIELDS: Final = ("custom_id", "method", "url", "body")
RECORD_FIELDS: Final = (*LINE_FIELDS, "batch_id")
#: OpenAI's bound, as ``contracts.CustomId`` declares it.
MAX_CUSTOM_ID_CHARS: Final = 512
METHOD: Final = "POST"
#: ``Settings.max_message_bytes``'s default, for callers that hold no settings.
DEFAULT_MAX_RECORD_BYTES: Final[int] = Settings.model_fields["max_message_bytes"].default
#: ``Settings.batch_max_line_bytes``'s default: the longest line of an input file, as written.
DEFAULT_MAX_LINE_BYTES: Final[int] = Settings.model_fields["batch_max_line_bytes"].default
#: The longest safe batch id: sizes a record whose batch id is not chosen yet.
LONGEST_BATCH_ID: Final = "b" * 128
INVALID_LINE = "Invalid batch request line: "


class Stage(IntEnum):
    """Rule groups in the order they are judged."""

    ATTRIBUTION = 1
    SIZE = 2
    SHAPE = 3
    SERVING = 4


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken rule: the message people read and the answer vLLM's server would give."""

    stage: Stage
    message: str
    response: ResponseData


class _Missing:
    def __repr__(self) -> str:
        return "nothing"


MISSING: Final = _Missing()
"""Stands for an absent field, so messages can tell ``null`` from no field at all."""


def _invalid(stage: Stage, message: str) -> Problem:
    response = error_response(HTTPStatus.BAD_REQUEST, INVALID_LINE + message)
    return Problem(stage, message, response)


def error_message(response: ResponseData) -> str:
    """The message of an error body in vLLM's shape."""
    error = (response.body or {}).get("error") or {}
    return str(error.get("message", ""))


def _served(response: ResponseData) -> Problem:
    return Problem(Stage.SERVING, error_message(response), response)


def decode(raw: bytes) -> dict[str, Any] | Problem:
    """The line as a JSON object, or why it is not one (never raises)."""
    try:
        document = orjson.loads(raw)
    except ValueError as error:  # orjson.JSONDecodeError, also for bytes that are not UTF-8
        return _invalid(Stage.ATTRIBUTION, f"not valid JSON ({error})")
    if not isinstance(document, dict):
        return _invalid(Stage.ATTRIBUTION, f"not a JSON object but {_json_kind(document)}")
    return document


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    kinds = {list: "an array", str: "a string", int: "a number", float: "a number"}
    return kinds.get(type(value), "null")


def custom_id_problem(value: object) -> Problem | None:
    if isinstance(value, str) and 1 <= len(value) <= MAX_CUSTOM_ID_CHARS:
        return None
    return _invalid(
        Stage.ATTRIBUTION,
        f"custom_id must be a string of 1 to {MAX_CUSTOM_ID_CHARS} characters, "
        f"not {describe(value)}",
    )


def batch_id_problem(value: object) -> Problem | None:
    if isinstance(value, str) and is_safe_batch_id(value):
        return None
    return _invalid(
        Stage.ATTRIBUTION,
        f"unsafe batch_id {describe(value)}: use 1 to {len(LONGEST_BATCH_ID)} letters, digits, "
        "'_' and '-', starting with a letter or digit",
    )


def duplicate_problem(custom_id: str) -> Problem:
    """A ``custom_id`` already used in the file: one batch holds one answer per id."""
    return _invalid(Stage.ATTRIBUTION, f"duplicate custom_id {describe(custom_id)}")


def size_problem(record: Mapping[str, Any], max_bytes: int) -> Problem | None:
    """The record as it is published (orjson, compact) must fit ``max_bytes``."""
    try:
        size = len(orjson.dumps(record))
    except orjson.JSONEncodeError as error:  # nested deeper than orjson writes (254 levels)
        return _invalid(Stage.SHAPE, f"the line cannot be published as JSON ({error})")
    if size <= max_bytes:
        return None
    message = (
        f"the request record is {size} bytes, over the {max_bytes}-byte limit of a Kafka "
        "message (max_message_bytes)"
    )
    response = error_response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, message)
    return Problem(Stage.SIZE, message, response)


def line_size_problem(size: int, max_line_bytes: int) -> Problem:
    """A line of the input file longer than ``max_line_bytes`` (``size``, its bytes without
    the newline): refused before it is parsed, so its ``custom_id`` is not known."""
    message = (
        f"the line is {size} bytes, over the {max_line_bytes}-byte limit of a request line "
        "(batch_max_line_bytes)"
    )
    response = error_response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, message)
    return Problem(Stage.SIZE, message, response)


def shape_problems(document: Mapping[str, Any], fields: Collection[str]) -> list[Problem]:
    """Field types as ``contracts.RequestMessage`` takes them; ``method`` defaults to POST."""
    problems = []
    method = document.get("method", METHOD)
    if not isinstance(method, str):
        problems.append(_invalid(Stage.SHAPE, f"method must be a string, not {describe(method)}"))
    url = document.get("url", MISSING)
    if not isinstance(url, str):
        problems.append(_invalid(Stage.SHAPE, f"url must be a string, not {describe(url)}"))
    body = document.get("body", MISSING)
    if not isinstance(body, dict):
        problems.append(_invalid(Stage.SHAPE, f"body must be a JSON object, not {describe(body)}"))
    unknown = sorted(set(document) - set(fields))
    if unknown:
        problems.append(_invalid(Stage.SHAPE, f"unknown fields {describe(unknown)}"))
    return problems


def _refusals(method: object, url: object, body: object) -> Iterator[ResponseData]:
    """The serving rules, in the engine's order; a field of the wrong type is a shape problem."""
    if isinstance(method, str) and method != METHOD:
        yield method_not_allowed(method)
    if isinstance(url, str) and url not in SUPPORTED_ENDPOINTS:
        yield unsupported_endpoint(url)
    if isinstance(body, Mapping) and body.get("stream"):
        yield streaming_refused()


def serving_refusal(method: str, url: str, body: Mapping[str, Any]) -> ResponseData | None:
    """What vLLM's server answers a request it will not serve; None when it serves it."""
    return next(_refusals(method, url, body), None)


def _check(
    document: Mapping[str, Any],
    record: Mapping[str, Any],
    fields: Collection[str],
    max_bytes: int,
    serving: bool = True,
) -> list[Problem]:
    checks = [
        custom_id_problem(document.get("custom_id", MISSING)),
        size_problem(record, max_bytes),
    ]
    found = [problem for problem in checks if problem is not None]
    found += shape_problems(document, fields)
    if serving:
        method, url = document.get("method", METHOD), document.get("url")
        found += [_served(response) for response in _refusals(method, url, document.get("body"))]
    return sorted(found, key=lambda problem: problem.stage)


def check_line(
    line: Mapping[str, Any], *, max_bytes: int, batch_id: str | None = None
) -> list[Problem]:
    """Every rule an input file's line breaks, earliest stage first; empty when it is valid.

    ``batch_id`` is the batch it will be published in; None sizes it for the longest one.
    """
    record = {**line, "batch_id": batch_id or LONGEST_BATCH_ID}
    return _check(line, record, LINE_FIELDS, max_bytes)


def check_record(
    record: Mapping[str, Any], *, max_bytes: int, serving: bool = True
) -> list[Problem]:
    """Every rule a request record read from Kafka breaks, earliest stage first; without
    ``serving``, not the serving rules (the worker leaves those to the engine, which checks
    them once, where vLLM's server would)."""
    problem = batch_id_problem(record.get("batch_id", MISSING))
    checked = _check(record, record, RECORD_FIELDS, max_bytes, serving)
    return ([problem] if problem else []) + checked


def answer(problems: Sequence[Problem]) -> ResponseData:
    """The one answer to a refused line: its earliest broken stage decides, as the worker and
    the engine would answer it (the engine stops at the first serving refusal)."""
    first = min(problem.stage for problem in problems)
    decisive = [problem for problem in problems if problem.stage is first]
    if first in (Stage.SIZE, Stage.SERVING) or len(decisive) == 1:
        return decisive[0].response
    return error_response(
        HTTPStatus.BAD_REQUEST, INVALID_LINE + "; ".join(p.message for p in decisive)
    )


def line_model(line: Mapping[str, Any] | None) -> str | None:
    """The model a line names (``body.model``) if a manifest can carry it: a batch's manifest
    names its first line's (``submit`` refuses a file that mixes models)."""
    body = line.get("body") if line is not None else None
    model = body.get("model") if isinstance(body, Mapping) else None
    if isinstance(model, str) and 0 < len(model) <= MAX_MODEL_NAME_LENGTH:
        return model
    return None
