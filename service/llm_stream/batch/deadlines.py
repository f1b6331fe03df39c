"""The deadline rule: when a request's time is up, and the line that answers it then.

A deadline travels with each request record (the ``llm-stream-deadline`` header, Unix
seconds): a batch's is its ``expires_at`` (``created_at`` plus its completion window), which
the client sets on every line; a single request may name any. The worker checks it when a
request leaves its waiting queue, just before the engine: a request whose deadline has passed
is answered with OpenAI's ``batch_expired`` line instead of running, so expired work never
spends the GPU.
A request already running when its deadline passes is finished (its answer is paid for).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from llm_stream.batch.result_lines import result_message
from llm_stream.contracts import (
    DEADLINE_HEADER,
    MAX_CREATED_AT,
    ErrorData,
    ResultMessage,
)

#: The ``error.code`` of a request not run because its deadline (completion window) passed.
BATCH_EXPIRED = "batch_expired"
#: OpenAI's words for such a line in a batch's error file.
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
#: The ``error.code`` of a single request (request/reply) not run because its deadline passed.
REQUEST_EXPIRED = "request_expired"
SINGLE_EXPIRED_MESSAGE = "This request could not be executed before its deadline passed."


def deadline_header(deadline: float) -> tuple[str, bytes]:
    """The header that carries ``deadline`` on a request record."""
    return (DEADLINE_HEADER, f"{deadline:.3f}".rstrip("0").rstrip(".").encode())


def deadline_of(headers: Mapping[str, str]) -> float | None:
    """The record's deadline, or None: absent, or not a finite number of Unix seconds (a
    malformed header must not expire a request, nor crash the worker)."""
    text = headers.get(DEADLINE_HEADER)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and 0 <= value <= MAX_CREATED_AT else None


def has_expired(deadline: float | None, now: float) -> bool:
    """The one rule: expired once ``now`` (Unix seconds) reaches the deadline."""
    return deadline is not None and now >= deadline


def expired_error(*, single: bool = False) -> ErrorData:
    """The error of a request whose deadline passed before it ran: OpenAI's ``batch_expired``
    for a batch line, ``request_expired`` for a single request (it has no batch)."""
    if single:
        return ErrorData(code=REQUEST_EXPIRED, message=SINGLE_EXPIRED_MESSAGE)
    return ErrorData(code=BATCH_EXPIRED, message=EXPIRED_MESSAGE)


def expired_result(batch_id: str, custom_id: str) -> ResultMessage:
    """The line of a batch request whose deadline passed before it ran (OpenAI's shape)."""
    return result_message(batch_id, custom_id, expired_error())
