"""run-batch's pipeline in its process: topics on the private broker, a worker on the starting
engine, an aggregator, the batch submitted and followed to its end, as any client would.

Imported once vLLM's engine has started loading (``run_batch.main``), so that these imports
(the Kafka clients, the roles) cost no time beside vLLM's.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from tqdm import tqdm

from llm_stream.aggregator.app import AggregatorApp
from llm_stream.batch.status import TERMINAL_STATUSES
from llm_stream.client import BatchClient
from llm_stream.contracts import BatchObject
from llm_stream.engine.starting import StartingEngine
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from llm_stream.worker.app import WorkerApp


async def serve_batch(
    engine: StartingEngine,
    settings: Settings,
    batch_id: str,
    lines: Iterable[dict[str, Any]],
    *,
    count: int,
    endpoint: str,
) -> None:
    """Submit ``lines`` (``count`` of them) as one batch and return once its files are
    written; the engine is closed either way. The engine's failure, if any, is what raises."""
    await ensure_topics(settings)
    worker, aggregator = WorkerApp(settings, engine), AggregatorApp(settings)
    tasks = [asyncio.create_task(role.run()) for role in (worker, aggregator)]
    try:
        async with BatchClient.from_settings(settings) as client:
            await client.submit(
                lines,
                batch_id=batch_id,
                endpoint=endpoint,
                request_count=count,
                keep_input=False,  # one run, to the end: nothing to resume later
            )
            await _follow_to_the_end(client, batch_id, count, tasks)
    except Exception:
        if engine.failure is not None:  # the cause, not the worker stopping for want of it
            raise engine.failure from None
        raise
    finally:
        for role in (worker, aggregator):
            role.stopping.set()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
        await engine.close()


async def _follow_to_the_end(
    client: BatchClient, batch_id: str, count: int, tasks: Sequence[asyncio.Task[int]]
) -> BatchObject:
    """Show the batch's progress from its status objects until it ends, as any client would;
    stop early if the worker or the aggregator does."""
    view = await client.status_view()
    view.watch(batch_id)
    with tqdm(total=count, unit="req", desc="run-batch", file=sys.stderr) as progress:
        while True:
            batch = view.latest(batch_id)
            if batch is not None:
                counts = batch.request_counts
                progress.update(counts.completed + counts.failed - progress.n)
                if batch.status in TERMINAL_STATUSES:
                    return batch
            for task in tasks:
                if task.done():
                    raise RuntimeError(f"pipeline stopped early: {task.exception()!r}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await view.changed()
