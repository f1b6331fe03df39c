"""How a worker holds records it fetched but has not started (``worker.waiting``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class WaitingSettings(BaseModel):
    """Read by workers: the bounds and the order of their priority queue."""

    worker_max_waiting: int = Field(
        10_000,
        ge=0,
        description="Records a worker fetches beyond max_in_flight and holds, most urgent "
        "(llm-stream-priority) first: an urgent request behind this many queued lines still "
        "goes first. 0: none (records start in the order fetched).",
    )
    worker_max_waiting_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="Bytes of record values a worker holds waiting; past it, it fetches no more "
        "(one fetch may overshoot by its own size) until work starts.",
    )
    worker_priority_aging_s: float = Field(
        60.0,
        ge=0,
        description="A waiting record is overtaken only by one more urgent by one priority "
        "level per this many seconds it arrived later, so nothing waits forever; 0: strict "
        "priority (less urgent work can starve under a steady stream of more urgent).",
    )
