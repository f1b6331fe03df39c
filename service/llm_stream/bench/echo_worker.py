"""A worker process on the echo engine, holding each request for a fixed time: one host of the
scale-out benchmark and of the multi-host fault tests.

Those start one such process per host (a network namespace, a pod) against one broker, so the
workers are bound by their engine's time, not by the machine's cores, and a fault (a link cut,
a broker restart) hits a real process with its own connections. Each process writes a report
every half second: the prompts its engine answered and every partition assignment the group
gave it, since what the broker assigned is part of any figure (the embedded broker's
rebalances are not to be trusted). Settings come from ``LLM_STREAM_*`` as for any role.

    python -m llm_stream.bench.echo_worker --latency 0.2 --report worker-1.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_stream.engine.echo import EchoEngine
from llm_stream.kafka.topics import ensure_topics
from llm_stream.ops.process import start_process
from llm_stream.settings import Settings
from llm_stream.worker.app import WorkerApp

REPORT_INTERVAL_S = 0.5


class Report:
    """What one worker did: answers by prompt and its assignments over time, kept on disk."""

    def __init__(self, path: Path, engine: EchoEngine, worker: WorkerApp) -> None:
        self.path = path
        self.engine = engine
        self.worker = worker
        self.assignments: list[dict[str, Any]] = []
        self.started = time.time()

    def note_assignment(self) -> None:
        owned = sorted(f"{tp.topic}/{tp.partition}" for tp in self.worker.consumer.assignment())
        if not self.assignments or self.assignments[-1]["partitions"] != owned:
            self.assignments.append({"at": time.time(), "partitions": owned})

    def write(self, exit_code: int | None = None) -> None:
        state = {
            "pid": os.getpid(),
            "started": self.started,
            "answered": [str(request.body.get("prompt")) for request in self.engine.seen],
            # Started and not yet published (nor given up): results still to come.
            "in_flight": self.worker.pipeline.in_flight,
            "assignments": self.assignments,
            "exit_code": exit_code,
        }
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        temporary.replace(self.path)

    async def run(self) -> None:
        while True:
            self.note_assignment()
            self.write()
            await asyncio.sleep(REPORT_INTERVAL_S)


async def serve(settings: Settings, latency_s: float, concurrency: int, report: Path) -> int:
    await ensure_topics(settings)
    engine = EchoEngine(concurrency=concurrency, keep_requests=True, latency_s=latency_s)
    worker = WorkerApp(settings, engine)
    worker.stop_on_signals()
    reporting = Report(report, engine, worker)
    task = asyncio.create_task(reporting.run())
    code = 1
    try:
        code = await worker.run()
        return code
    finally:
        task.cancel()
        reporting.note_assignment()
        reporting.write(exit_code=code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_stream.bench.echo_worker")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds each request is held")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="the engine's max_num_seqs (in flight: 2x)"
    )
    parser.add_argument("--report", type=Path, required=True, help="JSON file, rewritten")
    args = parser.parse_args(argv)
    settings = Settings()
    start_process(settings, "llm-stream-worker")
    return asyncio.run(serve(settings, args.latency, args.concurrency, args.report))


if __name__ == "__main__":
    sys.exit(main())
