"""Request and reply's latency outside the engine, for ``llm-stream bench`` (part ``latency``).

One worker (echo engine) and one client on the embedded broker (or ``--bootstrap-servers``).
Each sample is one ``BatchClient.ask``: the clock runs from before the request is published to
its reply being handed to the caller, less the time the engine spent on it (the echo engine's
own, measured around its ``serve``), so what is left is ours and Kafka's: publish, fetch,
parse, reply, fetch again. Two figures, p50 and p99 (nearest rank) of each:

- idle: requests asked one after another, nothing else queued;
- queued: before each sample, ``queued`` low-priority batch lines (``llm-stream-priority``
  ``QUEUED_PRIORITY``) are published, then the request (priority 0) with their key, so it sits
  in their partition behind all of them. Each line holds the engine ``QUEUED_LINE_S`` (256 at
  a time), so a backlog builds as on a busy engine: in log order the request would wait for
  the whole backlog (about 2 s for 10,000 lines); by priority it waits for the fetch through
  the lines and one free slot. The summary gives how many lines started after the request was
  published and before it did, the median over the rounds (``latency_started_before``). The
  next round waits for the backlog.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_stream.batch.priority import priority_header
from llm_stream.bench.stream import _publish, _settings, request_line
from llm_stream.bench.support import say
from llm_stream.client import BatchClient
from llm_stream.engine.echo import EchoEngine
from llm_stream.engine.protocol import EngineReply, EngineRequest
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from llm_stream.worker.app import WorkerApp

#: The queued batch lines' priority (lower is sooner; the asked request's is 0).
QUEUED_PRIORITY = 100
#: How long each queued line holds the engine (the asks themselves take no time there).
QUEUED_LINE_S = 0.05
_QUEUED_PROMPT = "request "  # ``request_line``'s prompts
_WARMUP = 5
_ASK_TIMEOUT_S = 300.0


class TimedEcho(EchoEngine):
    """The echo engine, remembering how long it spent on each prompt."""

    def __init__(self) -> None:
        super().__init__(concurrency=256)
        self.spent: dict[str, float] = {}
        #: Requests started so far, and how many had started before each prompt.
        self.started = 0
        self.finished = 0
        self._progress = asyncio.Condition()
        self.started_before: dict[str, int] = {}

    async def until_finished(self, count: int) -> None:
        """Until ``count`` requests have finished in all."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.finished >= count)

    async def serve(self, request: EngineRequest) -> EngineReply:
        prompt = str(request.body.get("prompt"))
        self.started_before[prompt] = self.started
        self.started += 1
        started = time.perf_counter()
        try:
            if prompt.startswith(_QUEUED_PROMPT):
                self.started_before.pop(prompt)
                await asyncio.sleep(QUEUED_LINE_S)
            return await super().serve(request)
        finally:
            if not prompt.startswith(_QUEUED_PROMPT):
                self.spent[prompt] = time.perf_counter() - started
            async with self._progress:
                self.finished += 1
                self._progress.notify_all()


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: with few samples p99 is the largest, never interpolated."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


async def _ask(
    client: BatchClient, engine: TimedEcho, label: str, key: bytes | None = None
) -> tuple[float, int]:
    """Milliseconds outside the engine of one request/reply, and how many requests the
    engine had started before it."""
    prompt = f"{label}-{uuid.uuid4().hex}"
    started = time.perf_counter()
    answer = await client.ask(
        {"model": "echo", "prompt": prompt, "max_tokens": 1},
        endpoint="/v1/completions",
        timeout=_ASK_TIMEOUT_S,
        key=key,
    )
    elapsed = time.perf_counter() - started
    if answer.status_code != 200:
        raise RuntimeError(f"the echo engine answered {answer.status_code}")
    return (elapsed - engine.spent.pop(prompt)) * 1000, engine.started_before.pop(prompt)


async def measure(
    bootstrap: str,
    workdir: Path,
    *,
    samples: int,
    rounds: int,
    queued: int,
    fetch_max_wait_ms: int | None = None,
) -> dict[str, Any]:
    """The idle and queued figures (ms), from ``samples`` and ``rounds`` asks; the worker's
    and the listener's ``fetch_max_wait_ms`` is the deployment's unless given."""
    settings: Settings = _settings(bootstrap, workdir / "batches").with_overrides(
        max_in_flight=512, fetch_max_wait_ms=fetch_max_wait_ms
    )
    settings = settings.with_overrides(reply_topic=f"llm-stream.replies.{settings.requests_topic}")
    await ensure_topics(settings)
    engine = TimedEcho()
    worker = WorkerApp(settings, engine)
    running = asyncio.create_task(worker.run())
    try:
        async with BatchClient.from_settings(settings) as client:
            for _ in range(_WARMUP):  # group join, first fetches, the listener's start
                await _ask(client, engine, "warm-up")
            idle = [(await _ask(client, engine, "idle"))[0] for _ in range(samples)]
            behind, started_before = [], []
            low = [priority_header(QUEUED_PRIORITY)]
            for round_number in range(rounds):
                batch_id = f"queued-{uuid.uuid4().hex[:8]}"
                lines = (request_line(batch_id, i) for i in range(queued))
                base = engine.started
                await _publish(settings, settings.requests_topic, lines, batch_id.encode(), low)
                at_ask = engine.started  # lines started while they were being published
                # Keyed as the lines are: in their partition, behind every one of them.
                waited, before = await _ask(client, engine, "queued", batch_id.encode())
                behind.append(waited)
                started_before.append(before - at_ask)
                say(
                    f"latency: round {round_number + 1}/{rounds}, {waited:.1f} ms; "
                    f"{queued - (at_ask - base)} lines waiting when it was asked, "
                    f"{started_before[-1]} of them started before it"
                )
                await engine.until_finished(base + queued + 1)  # the backlog, before the next
    finally:
        worker.stopping.set()
        await asyncio.wait_for(running, 120)
    return {
        "reply_overhead_ms_p50": round(percentile(idle, 0.5), 2),
        "reply_overhead_ms_p99": round(percentile(idle, 0.99), 2),
        "reply_queued_ms_p50": round(percentile(behind, 0.5), 2),
        "reply_queued_ms_p99": round(percentile(behind, 0.99), 2),
        "latency_samples": samples,
        "latency_rounds": rounds,
        "latency_queued_lines": queued,
        "latency_queued_priority": QUEUED_PRIORITY,
        "latency_started_before": sorted(started_before)[len(started_before) // 2],
        "latency_fetch_max_wait_ms": settings.fetch_max_wait_ms,
    }
