"""The stream side of ``llm-stream bench``: the worker, on vLLM, fed from pre-published requests.

A child process like ``bench_offline``. It builds the engine exactly as ``llm-stream worker``
does (its parser, ``VllmEngine``, the ``WorkerApp`` role); each round gets fresh topics and group,
its requests are published before the worker starts, and the clock runs from the moment the
worker owns its partitions (its first fetch follows) to the last result read back, so
publishing, the group join and engine start-up are not counted. One unmeasured round on other
prompts warms the whole path first. Every ``custom_id`` must be answered with status 200;
output tokens come from ``usage``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from llm_stream.bench.children import SideInfo, child_main
from llm_stream.bench.offline import side_info
from llm_stream.bench.support import BenchError, EngineSpec, Run, custom_ids
from llm_stream.kafka.connection import client_kwargs
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from llm_stream.worker.app import WorkerApp, in_flight_limit

ROUND_TIMEOUT_S = 3600.0


def request_lines(batch_id: str, prompts: Sequence[str], max_tokens: int) -> list[bytes]:
    """One request message per prompt, its body the twin of the offline ``SamplingParams``.

    No ``model`` in the body: the worker then serves its one model under whatever name.
    """
    line = {"batch_id": batch_id, "method": "POST", "url": "/v1/completions"}
    params = {"max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
    return [
        orjson.dumps({**line, "custom_id": cid, "body": {"prompt": prompt, **params}})
        for cid, prompt in zip(custom_ids(len(prompts)), prompts, strict=True)
    ]


def bench_settings(bootstrap: str, run_id: str) -> dict[str, str]:
    """Settings fields for a round: its own topics and group, so no other data is counted."""
    names = ("requests", "results", "batches", "batch_status", "dead_letter")
    fields = {f"{name}_topic": f"llm-stream-bench-{run_id}.{name}" for name in names}
    fields["worker_group_id"] = f"llm-stream-bench-{run_id}"
    return {**fields, "bootstrap_servers": bootstrap}


class ResultTally:
    """Results of one batch: the first answer per ``custom_id`` counts, redeliveries are dropped."""

    def __init__(self, batch_id: str, expected: Iterable[str]) -> None:
        self.batch_id = batch_id
        self._pending = set(expected)
        self.completion_tokens = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, result: Mapping[str, Any]) -> None:
        """Count ``result`` if it answers a pending request; raise on anything but a 200."""
        custom_id = result.get("custom_id")
        if result.get("batch_id") != self.batch_id or custom_id not in self._pending:
            return
        response = result.get("response") or {}
        if response.get("status_code") != 200:
            raise BenchError(f"{custom_id} was not answered with 200: {json.dumps(result)[:1500]}")
        self._pending.discard(custom_id)
        self.completion_tokens += int(response["body"]["usage"]["completion_tokens"])


async def _publish(settings: Settings, lines: list[bytes]) -> None:
    producer = AIOKafkaProducer(**client_kwargs(settings), linger_ms=5)
    await producer.start()
    try:
        sent = [await producer.send(settings.requests_topic, line) for line in lines]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _answered(worker: WorkerApp, consumer: AIOKafkaConsumer, tally: ResultTally) -> float:
    """Seconds from the worker owning its partitions to the last result of ``tally``."""
    while not worker.consumer.assignment():  # noqa: ASYNC110 - 1 ms polls, far below a run
        await asyncio.sleep(0.001)
    started = time.perf_counter()
    while tally.pending:
        fetched = await consumer.getmany(timeout_ms=200)
        for record in (r for records in fetched.values() for r in records):
            tally.add(orjson.loads(record.value))
    return time.perf_counter() - started


async def _round(base: Settings, engine: Any, prompts: list[str], max_tokens: int) -> Run:
    """Publish ``prompts`` to fresh topics, then run a fresh worker on them until answered."""
    settings = base.with_overrides(**bench_settings(base.bootstrap_servers, uuid.uuid4().hex[:8]))
    await ensure_topics(settings)
    batch_id = f"bench-{uuid.uuid4().hex[:8]}"
    await _publish(settings, request_lines(batch_id, prompts, max_tokens))
    tally = ResultTally(batch_id, custom_ids(len(prompts)))
    consumer = AIOKafkaConsumer(
        settings.results_topic,
        **client_kwargs(settings),
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    worker = WorkerApp(settings, engine)
    running = asyncio.create_task(worker.run())
    answered = asyncio.create_task(_answered(worker, consumer, tally))
    try:
        await asyncio.wait(
            {running, answered}, timeout=ROUND_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if not answered.done():
            ended = f"exited with {running.result()}" if running.done() else "timed out"
            raise BenchError(f"the worker {ended} with {tally.pending} requests unanswered")
        seconds = answered.result()
    finally:
        answered.cancel()
        worker.stopping.set()
        await asyncio.gather(running, answered, return_exceptions=True)
        await consumer.stop()
    return Run(output_tokens=tally.completion_tokens, seconds=seconds)


class StreamSide:
    """The worker on ``VllmEngine``, a fresh round of topics per run, on a loop kept between
    runs (the engine's)."""

    def __init__(
        self, runner: asyncio.Runner, engine: Any, settings: Settings, spec: EngineSpec
    ) -> None:
        self._runner, self._engine, self._settings = runner, engine, settings
        self._prompts, self._max_tokens = spec["prompts"], spec["max_tokens"]
        runner.run(_round(settings, engine, spec["warmup_prompts"], self._max_tokens))

    def describe(self) -> SideInfo:
        return side_info(
            {
                "max_num_seqs": self._engine.max_concurrency,
                "max_in_flight": in_flight_limit(self._settings, self._engine),
            }
        )

    def run_once(self) -> Run:
        return self._runner.run(
            _round(self._settings, self._engine, self._prompts, self._max_tokens)
        )


@contextmanager
def start(spec: EngineSpec) -> Iterator[StreamSide]:
    from llm_stream.engine.vllm_engine import VllmEngine
    from llm_stream.ops.process import start_process
    from llm_stream.worker.args import parse_worker_args

    argv = ["--model", spec["model"], *spec["engine_flags"]]
    if (max_in_flight := spec.get("max_in_flight")) is not None:
        argv += ["--max-in-flight", str(max_in_flight)]
    settings, args = parse_worker_args(argv)
    settings = settings.with_overrides(bootstrap_servers=spec["bootstrap_servers"])
    start_process(settings, "llm-stream-bench-worker")
    with asyncio.Runner() as runner:
        engine = runner.run(VllmEngine.start(args))
        try:
            yield StreamSide(runner, engine, settings, spec)
        finally:
            runner.run(engine.close())


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], start))
