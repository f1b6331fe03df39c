"""The OpenAI batch status machine: the statuses, which are final, and which moves are allowed.

OpenAI's edges, plus what this pipeline needs and OpenAI can also report:

- ``validating`` -> ``in_progress`` | ``failed`` | ``cancelling``. A batch with a manifest and
  no status yet is reported as ``validating``; its first result makes it ``in_progress``.
- ``in_progress`` -> ``finalizing`` | ``expired`` | ``failed`` | ``cancelling``. ``failed``
  here: a batch that cannot be finished, such as one whose manifest never came.
- ``finalizing`` -> ``completed`` | ``expired`` | ``failed``. The aggregator finalizes while it
  writes a batch's files (``finalizing_at``), and publishes only the status that ends it:
  completed when every result came, expired when the window passed first, failed for an orphan.
- ``cancelling`` -> ``cancelled``. Anyone may ask for the cancel (``BatchClient.cancel``
  publishes ``cancelling``); the aggregator writes ``cancelled`` once every request has a line.

``completed``, ``failed``, ``expired`` and ``cancelled`` are terminal: nothing leaves them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from llm_stream.contracts import BatchStatus as BatchStatus
from llm_stream.errors import LlmStreamError

#: Statuses after which a batch never changes again.
TERMINAL_STATUSES: frozenset[BatchStatus] = frozenset(
    {BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.EXPIRED, BatchStatus.CANCELLED}
)

#: Statuses of a batch whose cancellation was asked for: none of its requests runs any more.
CANCELLED_STATUSES: frozenset[BatchStatus] = frozenset(
    {BatchStatus.CANCELLING, BatchStatus.CANCELLED}
)

#: Every status each status may move to (see the module docstring for why each edge exists).
ALLOWED_TRANSITIONS: Mapping[BatchStatus, frozenset[BatchStatus]] = MappingProxyType(
    {
        BatchStatus.VALIDATING: frozenset(
            {BatchStatus.IN_PROGRESS, BatchStatus.FAILED, BatchStatus.CANCELLING}
        ),
        BatchStatus.IN_PROGRESS: frozenset(
            {
                BatchStatus.FINALIZING,
                BatchStatus.EXPIRED,
                BatchStatus.FAILED,
                BatchStatus.CANCELLING,
            }
        ),
        BatchStatus.FINALIZING: frozenset(
            {BatchStatus.COMPLETED, BatchStatus.EXPIRED, BatchStatus.FAILED}
        ),
        BatchStatus.CANCELLING: frozenset({BatchStatus.CANCELLED}),
        **{status: frozenset() for status in TERMINAL_STATUSES},
    }
)


class InvalidTransitionError(LlmStreamError, ValueError):
    """A status change the machine does not allow: a bug in the caller, never bad input."""

    def __init__(self, current: BatchStatus, target: BatchStatus) -> None:
        super().__init__(f"a batch cannot go from {current} to {target}")
        self.current = current
        self.target = target


def can_transition(current: BatchStatus, target: BatchStatus) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


def check_transition(current: BatchStatus, target: BatchStatus) -> BatchStatus:
    """``target`` if a batch in ``current`` may move to it; InvalidTransitionError if not."""
    if not can_transition(current, target):
        raise InvalidTransitionError(current, target)
    return target
