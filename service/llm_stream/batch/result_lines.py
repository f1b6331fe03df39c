"""The one factory of result lines: a worker's result message and an OpenAI output-file line.

Every answer, whether the engine, the worker or ``run-batch`` itself gave it, gets the same
shape: a ``batch_req_`` line id, and a ``req_`` request id when its response has none, so that
no output line differs by who wrote it. A request that was never answered (its batch was
cancelled first) gets OpenAI's shape for that: no response, an ``error`` with a code.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import orjson

from llm_stream.contracts import ErrorData, ResponseData, ResultMessage

#: The ``error.code`` of a request not run, or stopped, because its batch was cancelled.
BATCH_CANCELLED = "batch_cancelled"


def new_line_id() -> str:
    return f"batch_req_{uuid.uuid4().hex}"


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def with_request_id(response: ResponseData) -> ResponseData:
    """``response``, with a fresh request id if it has none (error bodies made here have none)."""
    if response.request_id:
        return response
    return response.model_copy(update={"request_id": new_request_id()})


def result_message(
    batch_id: str, custom_id: str, answer: ResponseData | ErrorData
) -> ResultMessage:
    """The result a worker publishes for one request: the engine's (or the request rules')
    response, or an error of the service's own (no response: not run)."""
    if isinstance(answer, ErrorData):
        return ResultMessage(
            batch_id=batch_id, id=new_line_id(), custom_id=custom_id, response=None, error=answer
        )
    return ResultMessage(
        batch_id=batch_id,
        id=new_line_id(),
        custom_id=custom_id,
        response=with_request_id(answer),
    )


def cancelled_result(batch_id: str, custom_id: str) -> ResultMessage:
    """The result of a request whose batch was cancelled before it finished."""
    return ResultMessage(
        batch_id=batch_id,
        id=new_line_id(),
        custom_id=custom_id,
        response=None,
        error=ErrorData(
            code=BATCH_CANCELLED,
            message="The request was not completed because its batch was cancelled.",
        ),
    )


def output_line(result: ResultMessage) -> bytes:
    """The OpenAI batch output line of a result (without the bus's ``batch_id``).

    The aggregator writes one per line, so the line is built from the model's fields and
    written by orjson (under half of pydantic's serializer); a test holds it to pydantic's
    ``model_dump`` of every field but ``batch_id``, so a field added to the contract cannot go
    missing here. A line orjson refuses (an integer beyond 64 bits) is written by pydantic's
    serializer, which keeps it exact; an infinity or NaN becomes null either way."""
    response, error = result.response, result.error
    line = {
        "id": result.id,
        "custom_id": result.custom_id,
        "response": None
        if response is None
        else {
            "status_code": response.status_code,
            "request_id": response.request_id,
            "body": response.body,
        },
        "error": None if error is None else {"code": error.code, "message": error.message},
    }
    try:
        return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return _RESULT_WRITER.to_json(result, exclude=_BUS_FIELDS) + b"\n"


_BUS_FIELDS: set[str] = {"batch_id"}
_RESULT_WRITER = ResultMessage.__pydantic_serializer__


def local_output_line(custom_id: str | None, response: ResponseData) -> bytes:
    """The output line of an answer given without the bus (``run-batch`` refusing a line before
    it is submitted); ``custom_id`` is None for a line that had none to file it under."""
    return _encode(
        {
            "id": new_line_id(),
            "custom_id": custom_id,
            "response": with_request_id(response).model_dump(mode="json"),
            "error": None,
        }
    )


def _encode(document: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(document) + b"\n"
    except orjson.JSONEncodeError:  # an integer beyond 64 bits: valid JSON, not for orjson
        return json.dumps(document, allow_nan=False, separators=(",", ":")).encode() + b"\n"
