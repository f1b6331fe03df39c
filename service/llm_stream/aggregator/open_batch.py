"""An open batch: what the aggregator keeps in memory for a batch between its first result and
its files (its rows are in the spool), and which statuses it reports.

A batch asked to cancel reports ``cancelling`` while its lines still arrive and ends
``cancelled`` with the results it holds, whether its last line came or its window passed
(OpenAI's semantics: a cancelled batch keeps what finished). Any other batch ends in the
status its writer decided (completed, expired, failed), after ``finalizing``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Link, Span, SpanContext, SpanKind

from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import CANCELLED_STATUSES, BatchStatus, check_transition
from llm_stream.batch.usage import UsageTotals, answered_model
from llm_stream.contracts import BatchManifest, BatchObject, ResultMessage
from llm_stream.ops import telemetry
from llm_stream.protocols import IncomingRecord, TopicPartitionKey


@dataclass(slots=True)
class OpenBatch:
    """One open batch's state besides its spooled rows."""

    first_offsets: dict[TopicPartitionKey, int] = field(default_factory=dict)
    in_progress_at: int = field(default_factory=lambda: int(time.time()))
    #: ``time.monotonic()`` of the last progress sent; never: -inf (the clock may start at 0
    #: on a machine booted moments ago, where 0.0 would read as "just sent").
    progress_sent_at: float = -math.inf
    progress_sent_total: int = -1
    trace_links: list[SpanContext] = field(default_factory=list)
    #: Tokens of the results spooled so far, each custom_id counted once.
    usage: UsageTotals = field(default_factory=UsageTotals)
    #: The model the first answer names (a manifest that names one wins).
    model: str | None = None

    def trace(self, record: IncomingRecord, result: ResultMessage, link_limit: int) -> None:
        """A receive span in the request's trace; its context is kept for the finalise link
        only if recorded (a propagated context alone is valid, but would be kept for nothing).
        Called only where tracing is on (``telemetry.tracing_enabled``)."""
        with telemetry.tracer().start_as_current_span(
            f"receive {record.topic}",
            context=telemetry.context_from_headers(record.headers),
            kind=SpanKind.CONSUMER,
            attributes={
                **telemetry.messaging_attributes(record, "receive"),
                "llm_stream.batch_id": result.batch_id,
                "llm_stream.custom_id": result.custom_id,
            },
        ) as span:
            if span.is_recording() and len(self.trace_links) < link_limit:
                self.trace_links.append(span.get_span_context())

    def finalize_span(
        self, batch_id: str, total: int, completed: int, failed: int
    ) -> AbstractContextManager[Span]:
        """The span of writing the batch's files, linked to its requests' receive spans."""
        return telemetry.tracer().start_as_current_span(
            f"finalize {batch_id}",
            links=[Link(context) for context in self.trace_links],
            attributes={
                "llm_stream.batch_id": batch_id,
                "llm_stream.request_counts.total": total,
                "llm_stream.request_counts.completed": completed,
                "llm_stream.request_counts.failed": failed,
            },
        )

    def batch_object(
        self,
        manifest: BatchManifest,
        status: BatchStatus,
        cancelling_at: int | None,
        counts: tuple[int, int],
        fields: dict[str, Any],
    ) -> BatchObject:
        """The batch's object: in progress from its first result (or, with none, its expiry)
        and cancelling from its cancel, if any. ``counts``: completed and failed requests;
        ``fields`` may add ``reached_at`` times."""
        reached = {BatchStatus.IN_PROGRESS: self.in_progress_at}
        if cancelling_at is not None and status in CANCELLED_STATUSES:
            reached[BatchStatus.CANCELLING] = cancelling_at
        reached.update(fields.pop("reached_at", None) or {})
        return batch_object(
            manifest,
            status,
            completed=counts[0],
            failed=counts[1],
            reached_at=reached,
            usage=self.usage.usage(),
            model=self.model,
            **fields,
        )

    def count(self, results: Iterable[ResultMessage]) -> None:
        """Count results spooled for the first time."""
        bodies = [None if r.response is None else r.response.body for r in results]
        self.usage.add_bodies(bodies)
        if self.model is None:
            self.model = next(filter(None, map(answered_model, bodies)), None)

    def progress_due(self, total: int, interval: float) -> bool:
        """True when progress should be published now (and records it as sent)."""
        now = time.monotonic()
        if now - self.progress_sent_at < interval or total == self.progress_sent_total:
            return False
        self.progress_sent_at, self.progress_sent_total = now, total
        return True

    def report_progress_now(self) -> None:
        """The next ``progress_due`` says yes (the batch's status changed)."""
        self.progress_sent_at, self.progress_sent_total = -math.inf, -1


def progress_status(cancelling_at: int | None) -> BatchStatus:
    return BatchStatus.IN_PROGRESS if cancelling_at is None else BatchStatus.CANCELLING


def ending(status: BatchStatus, cancelling_at: int | None) -> tuple[BatchStatus, BatchStatus]:
    """How a batch ends that would otherwise end ``status``: the status it passes through and
    the one it ends in. Once asked to cancel: ``cancelling``, ``cancelled`` (a batch without a
    manifest, ``failed``, cannot have been asked); else ``finalizing``, ``status``.
    InvalidTransitionError for an end the status machine forbids."""
    if cancelling_at is not None and status is not BatchStatus.FAILED:
        cancelled = check_transition(BatchStatus.CANCELLING, BatchStatus.CANCELLED)
        return BatchStatus.CANCELLING, cancelled
    return BatchStatus.FINALIZING, check_transition(BatchStatus.FINALIZING, status)
