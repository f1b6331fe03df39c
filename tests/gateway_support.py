"""Test support for the gateway: an in-memory stream behind it and batch-file lines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from llm_stream.aggregator.app import AggregatorApp
from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus, can_transition
from llm_stream.client.manifests import build_manifest
from llm_stream.client.resume import Resumed, ResumeRefusedError
from llm_stream.client.status_index import Enqueued, enqueued_tokens
from llm_stream.contracts import (
    BatchManifest,
    BatchObject,
    ExpiresAfter,
    ResultMessage,
    WorkerAnnouncement,
    owner_project,
)
from llm_stream.engine.protocol import InferenceEngine
from llm_stream.files.store import FileStore
from llm_stream.gateway.stream import BatchPage
from llm_stream.kafka.result_scan import ResultsPage
from llm_stream.kafka.topics import ensure_topics
from llm_stream.network import free_port
from llm_stream.settings import Settings
from llm_stream.worker.app import WorkerApp


class FakeBatchStream:
    """``BatchStream`` in memory: what was submitted, published and cancelled."""

    def __init__(self) -> None:
        self.objects: dict[str, BatchObject] = {}
        self.submitted: dict[str, list[dict[str, Any]]] = {}
        self.manifests: dict[str, BatchManifest] = {}
        self.published: list[BatchObject] = []
        self.not_ready: str | None = None
        #: The workers announced now (``live_workers``).
        self.workers: list[WorkerAnnouncement] = []
        #: Results on the topic so far, by batch (``results_so_far``).
        self.results: dict[str, list[ResultMessage]] = {}
        #: Batches asked to resume, and why a resume is refused (None: it is not).
        self.resumed_ids: list[str] = []
        self.refuse: str | None = None

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def retrieve(self, batch_id: str, *, look_further: bool = True) -> BatchObject | None:
        return self.objects.get(batch_id)

    async def page(
        self, *, limit: int, after: str | None, project: str | None = None
    ) -> BatchPage | None:
        newest = sorted(self.objects.values(), key=lambda b: (b.created_at, b.id), reverse=True)
        if project is not None:
            newest = [batch for batch in newest if owner_project(batch.project) == project]
        ids = [batch.id for batch in newest]
        if after is not None and after not in ids:
            return None
        start = 0 if after is None else ids.index(after) + 1
        return BatchPage(newest[start : start + limit], start + limit < len(newest))

    async def submit(
        self,
        lines: Iterable[Mapping[str, Any]],
        *,
        batch_id: str,
        endpoint: str,
        metadata: Mapping[str, str],
        completion_window: str,
        request_count: int,
        project: str | None = None,
        models: Collection[str] = (),
        input_tokens: Mapping[str, int] | None = None,
        output_expires_after: ExpiresAfter | None = None,
    ) -> None:
        submitted = [dict(line) for line in lines]
        assert len(submitted) == request_count
        manifest = build_manifest(
            batch_id,
            endpoint=endpoint,
            request_count=request_count,
            metadata=metadata,
            completion_window=completion_window,
            project=project,
            models=models,
            model=next(iter(models), None),
            input_tokens=input_tokens,
            output_expires_after=output_expires_after,
        )
        self.manifests[batch_id] = manifest
        self.submitted[batch_id] = submitted
        self.objects[batch_id] = batch_object(manifest, BatchStatus.VALIDATING)

    async def publish(self, batch: BatchObject) -> None:
        self.published.append(batch)
        self.objects[batch.id] = batch

    async def cancel(self, batch_id: str) -> BatchObject | None:
        batch = self.objects.get(batch_id)
        if batch is None or not can_transition(batch.status, BatchStatus.CANCELLING):
            return batch
        asked = batch.model_copy(
            update={"status": BatchStatus.CANCELLING, "cancelling_at": int(time.time())}
        )
        self.objects[batch_id] = asked
        return asked

    async def enqueued(self, project: str, model: str) -> Enqueued:
        for found_project, found_model, enqueued in self.enqueued_by_project():
            if (found_project, found_model) == (project, model):
                return enqueued
        return Enqueued(0, 0)

    def enqueued_by_project(self) -> list[tuple[str, str, Enqueued]]:
        """Counted by the status index's own rule (``enqueued_tokens``)."""
        totals: dict[tuple[str, str], Enqueued] = {}
        for batch_id, manifest in self.manifests.items():
            status = self.objects.get(batch_id)
            counted = enqueued_tokens(
                manifest.model_dump_json(exclude_none=True).encode(),
                None if status is None else status.model_dump_json().encode(),
            )
            for model, tokens in counted.items():
                key = (owner_project(manifest.project), model)
                batches, total = totals.get(key, Enqueued(0, 0))
                totals[key] = Enqueued(batches + 1, total + tokens)
        return [(project, model, found) for (project, model), found in sorted(totals.items())]

    async def results_so_far(
        self, batch_id: str, *, created_at: int, after: int | None, limit: int
    ) -> ResultsPage:
        """From ``results``: a batch's results in order, the cursor an index into them."""
        held = self.results.get(batch_id, [])
        start = after or 0
        page = held[start : start + limit]
        return ResultsPage(page, start + len(page), start + len(page) < len(held))

    async def live_workers(self) -> list[WorkerAnnouncement]:
        return list(self.workers)

    async def resume(self, batch_id: str, store: FileStore) -> Resumed:
        """Records the call; answers ``resumed`` (raise ``refuse`` if set)."""
        self.resumed_ids.append(batch_id)
        if self.refuse is not None:
            raise ResumeRefusedError(self.refuse)
        return Resumed(batch_id, republished=3, answered=7)

    def announce(
        self,
        *models: str,
        started_at: float = 1_700_000_000,
        endpoints: list[str] | None = None,
    ) -> None:
        """A live worker serving ``models`` (and ``endpoints``; None: it did not say)."""
        self.workers.append(
            WorkerAnnouncement(
                worker_id=f"worker-{len(self.workers)}",
                models=list(models),
                consumer_group="g",
                topics=["t"],
                max_concurrency=4,
                endpoints=endpoints,
                started_at=started_at,
                heartbeat_at=time.time(),
                expires_after_s=20,
            )
        )

    async def problem(self) -> str | None:
        return self.not_ready

    def add(
        self,
        batch_id: str,
        status: BatchStatus,
        created_at: int,
        project: str | None = None,
        **fields: Any,
    ) -> None:
        """A batch of ``project`` as the aggregator would have published it."""
        manifest = build_manifest(
            batch_id, endpoint="/v1/completions", request_count=2, project=project
        )
        manifest = manifest.model_copy(update={"created_at": created_at})
        reached: dict[BatchStatus, int] = {}
        if status is not BatchStatus.VALIDATING:
            reached[status] = created_at + 1
        self.objects[batch_id] = batch_object(manifest, status, reached_at=reached, **fields)


def jsonl(lines: Iterable[Mapping[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def chat_line(
    custom_id: str, model: str = "tiny", url: str = "/v1/chat/completions"
) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": custom_id}]}
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def upload(client: TestClient, content: bytes, name: str = "in.jsonl") -> dict[str, Any]:
    response = client.post("/v1/files", files={"file": (name, content)}, data={"purpose": "batch"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn in this event loop on a free loopback port; its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), lifespan="on", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # why it could not start
                raise RuntimeError("the gateway stopped before it started")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def keyed_settings(isolated_settings: Settings, key: str) -> Settings:
    """A test's settings for a gateway that takes ``key``, in front of a small pipeline whose
    topics exist."""
    ready = isolated_settings.with_overrides(
        topic_partitions=2, gateway_api_keys=[SecretStr(key)], max_in_flight=8
    )
    await ensure_topics(ready)
    return ready


@asynccontextmanager
async def pipeline(settings: Settings, engine: InferenceEngine) -> AsyncIterator[None]:
    """A worker and an aggregator, in this event loop, until the block ends."""
    worker, aggregator = WorkerApp(settings, engine), AggregatorApp(settings)
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(aggregator.run())]
    try:
        yield
    finally:
        worker.stopping.set()
        aggregator.stopping.set()
        assert await asyncio.wait_for(asyncio.gather(*tasks), 60) == [0, 0]
