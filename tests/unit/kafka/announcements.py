"""Worker announcements as the workers topic carries them, and a clock to age them by."""

from __future__ import annotations

from llm_stream.contracts import WorkerAnnouncement
from llm_stream.protocols import IncomingRecord


def announcement(worker: str, models: list[str], at: float) -> IncomingRecord:
    value = WorkerAnnouncement(
        worker_id=worker,
        models=models,
        consumer_group="g",
        topics=["t"],
        max_concurrency=4,
        started_at=at,
        heartbeat_at=at,
        expires_after_s=20,
    )
    return IncomingRecord("workers", 0, 0, value.model_dump_json().encode(), worker.encode())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
