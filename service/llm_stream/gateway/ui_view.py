"""What the web page shows of a batch: progress, counts, tokens and times as text.

One place formats them, for the server-rendered page and for the small JSON the page polls
while batches run, so a row reads the same before and after it is updated in place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from llm_stream.batch.status import TERMINAL_STATUSES, BatchStatus, can_transition
from llm_stream.gateway.models import Batch

#: The batch object's timestamps, in the order a batch reaches them, with their labels.
MILESTONES: tuple[tuple[str, str], ...] = (
    ("created_at", "Created"),
    ("in_progress_at", "In progress"),
    ("finalizing_at", "Finalizing"),
    ("completed_at", "Completed"),
    ("failed_at", "Failed"),
    ("expired_at", "Expired"),
    ("cancelling_at", "Cancelling"),
    ("cancelled_at", "Cancelled"),
    ("expires_at", "Expires"),
)
_FINISHED = ("completed_at", "failed_at", "expired_at", "cancelled_at")


def when(timestamp: int | None) -> str:
    """A Unix time as UTC text (the page's one time zone, whatever the reader's)."""
    if timestamp is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def iso(timestamp: int | None) -> str:
    """A Unix time for ``<time datetime=...>``."""
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


@dataclass(frozen=True)
class BatchView:
    """A batch as the page shows it."""

    batch: Batch

    @property
    def id(self) -> str:
        return self.batch.id

    @property
    def status(self) -> str:
        return str(self.batch.status)

    @property
    def terminal(self) -> bool:
        return self.batch.status in TERMINAL_STATUSES

    @property
    def can_cancel(self) -> bool:
        return can_transition(self.batch.status, BatchStatus.CANCELLING)

    @property
    def total(self) -> int:
        return self.batch.request_counts.total

    @property
    def done(self) -> int:
        counts = self.batch.request_counts
        return min(counts.completed + counts.failed, counts.total)

    @property
    def percent(self) -> int:
        """Whole percent of requests answered; a batch that ended with none counts as done."""
        if self.total == 0:
            return 100 if self.terminal else 0
        return self.done * 100 // self.total

    @property
    def requests(self) -> str:
        counts = self.batch.request_counts
        return f"{counts.completed} completed, {counts.failed} failed of {counts.total}"

    @property
    def tokens(self) -> str:
        usage = self.batch.usage
        return f"{usage.input_tokens} in, {usage.output_tokens} out, {usage.total_tokens} total"

    @property
    def finished_at(self) -> int | None:
        reached = [getattr(self.batch, name) for name in _FINISHED]
        return max((at for at in reached if at is not None), default=None)

    @property
    def milestones(self) -> list[tuple[str, int]]:
        """The timestamps this batch has, labelled, in time order (ties in the status machine's
        order), the expiry last."""
        found = [(label, getattr(self.batch, name)) for name, label in MILESTONES]
        reached = [(label, at) for label, at in found if at is not None]
        return sorted(reached, key=lambda milestone: (milestone[0] == "Expires", milestone[1]))

    @property
    def line_errors(self) -> list[dict[str, Any]]:
        """Why a batch failed validation: OpenAI's ``errors.data`` entries."""
        data = (self.batch.errors or {}).get("data") or []
        return [entry for entry in data if isinstance(entry, dict)]

    def progress(self) -> dict[str, Any]:
        """What the page polls while the batch runs (``/ui/progress``)."""
        return {
            "id": self.id,
            "status": self.status,
            "terminal": self.terminal,
            "done": self.done,
            "total": self.total,
            "percent": self.percent,
            "requests": self.requests,
            "tokens": self.tokens,
            "finished": when(self.finished_at),
        }
