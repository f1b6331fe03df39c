"""Batches that cannot finish: an open batch that has had no new result for
``batch_stall_after_s`` while none of its requests is pending (``kafka.pending_requests``: its
workers' groups have committed to the end of their topics) will get no more results; they were
lost (a broker that lost acknowledged writes). Rather than sit ``in_progress`` until its window
ends, the owner reads its partitions again (``StallReports``), then, still stalled, reports it:
a log line naming the batch and the count missing, a gauge, and an error on the batch object
(OpenAI's ``errors`` shape; the batch stays as it is otherwise) that says how to resume it.
More results than when reported clear the report.

A slow engine or a long queue is no stall: their requests are uncommitted, so pending; a late
result resets the clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from llm_stream.batch.objects import batch_errors
from llm_stream.contracts import BatchManifest

logger = logging.getLogger(__name__)

STALLED = "batch_stalled"


class StallWatch:
    """Which batches have had no new result for ``stall_after_s`` (per batch, the count of
    results and when it last changed; only batches still open are kept)."""

    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._stall_after_s = stall_after_s
        self._clock = clock
        self._seen: dict[str, tuple[int, float]] = {}

    def quiet(self, received: Mapping[str, int]) -> list[str]:
        """The batches among ``received`` (batch id -> results held) quiet for long enough."""
        now = self._clock()
        seen, quiet = {}, []
        for batch_id, count in received.items():
            last = self._seen.get(batch_id)
            if last is None or last[0] != count:
                seen[batch_id] = (count, now)
                continue
            seen[batch_id] = last
            if now - last[1] >= self._stall_after_s:
                quiet.append(batch_id)
        self._seen = seen
        return quiet

    def restart(self, batch_ids: Iterable[str]) -> None:
        """Count these batches quiet from now on (their results are being read again)."""
        for batch_id in batch_ids:
            self._seen.pop(batch_id, None)

    def quiet_for(self, batch_id: str) -> float:
        last = self._seen.get(batch_id)
        return 0.0 if last is None else self._clock() - last[1]


class StallReports:
    """Which stalled batches (``find_stalled``) to read again, to report and to clear.

    A broker back from a stale log end hands out again offsets this reader has passed, so a
    batch's missing results may be in the topic below its position: each time a batch is
    found stalled, its aggregator reads its partitions again since the batch was created
    (``ConsumeLoop.reread``; the batch's clock restarts). A batch is reported only once such
    a re-read found nothing more; the report is cleared once the batch holds more results
    than when reported."""

    def __init__(self) -> None:
        #: Batches reported stalled, with the results they held then.
        self.reported: dict[str, int] = {}
        #: Batches re-read while stalled, with the results they held at the first re-read.
        self._reread: dict[str, int] = {}

    def decide(
        self, stalled: set[str], received: Mapping[str, int]
    ) -> tuple[set[str], set[str], set[str]]:
        """``(to re-read, to report, to clear)``; ``received``: results held, per open batch
        (a batch not in it is written or no longer owned, and forgotten)."""
        self.reported = {b: n for b, n in self.reported.items() if b in received}
        self._reread = {b: n for b, n in self._reread.items() if received.get(b, n + 1) <= n}
        clear = {b for b, n in self.reported.items() if received[b] > n}
        report = {b for b in stalled if b in self._reread and b not in self.reported}
        for batch_id in stalled:
            self._reread.setdefault(batch_id, received[batch_id])
        return set(stalled), report, clear


async def find_stalled(
    watch: StallWatch,
    manifests: Sequence[BatchManifest],
    received: Mapping[str, int],
    is_pending: Callable[[Sequence[str]], Awaitable[bool]],
) -> set[str]:
    """The rule: the batches quiet for long enough whose models' requests are none pending
    (``is_pending(models)``, asked only for quiet batches)."""
    quiet = set(watch.quiet(received))
    return {
        manifest.batch_id
        for manifest in manifests
        if manifest.batch_id in quiet and not await is_pending(manifest.served_by())
    }


def stalled_errors(manifest: BatchManifest, received: int, quiet_s: float) -> dict[str, object]:
    """The batch object's ``errors`` while it is stalled."""
    missing = manifest.request_count - received
    message = (
        f"{missing} of {manifest.request_count} requests have no result and none is pending "
        f"(no result for {quiet_s:.0f} s): they were lost. Resume the batch to run them again: "
        f"`llm-stream resume {manifest.batch_id}` or POST /v1/batches/{manifest.batch_id}/resume"
    )
    return batch_errors(STALLED, message)
