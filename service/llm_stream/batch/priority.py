"""A request's priority: read from its record's header, or from its batch's metadata.

Both are string maps under the one name ``llm-stream-priority`` (``contracts.PRIORITY_HEADER``):
an integer, lower is sooner (vLLM's order), 0 when unset. A batch created over HTTP names it in
its metadata (OpenAI's batch object has no priority field); the client and ``submit`` then put
it on each line's header, which is all a worker reads.
"""

from __future__ import annotations

from collections.abc import Mapping

from llm_stream.contracts import PRIORITY_HEADER

#: Priorities are clamped to this range (vLLM takes any int64; the queue's keys stay finite).
MAX_PRIORITY = 1_000_000


def priority_of(values: Mapping[str, str]) -> int | None:
    """The priority named in ``values`` (a record's headers, a batch's metadata), or None when
    it names none or an unreadable one (a malformed value must not stop a worker: it counts as
    unset)."""
    text = values.get(PRIORITY_HEADER)
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return max(-MAX_PRIORITY, min(MAX_PRIORITY, value))


def priority_header(priority: int) -> tuple[str, bytes]:
    """The header that carries ``priority`` on a request record."""
    return (PRIORITY_HEADER, str(max(-MAX_PRIORITY, min(MAX_PRIORITY, priority))).encode())
