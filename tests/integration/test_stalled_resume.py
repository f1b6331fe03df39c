"""A batch whose results the broker lost, on a real broker: the worker answered and committed
every request, but half its results were acknowledged and never kept (a publisher that drops
them stands for a broker that loses acknowledged writes: the embedded broker implements no
DeleteRecords to cut them from the log), so the aggregator holds the rest only. The batch is
reported stalled (its object's ``batch_stalled`` error) once quiet for the set time with
nothing pending; the gateway's resume publishes exactly the lines with no result again, and
the batch completes with every ``custom_id`` once in its files."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import httpx
import orjson
import pytest

from llm_stream.aggregator.app import AggregatorApp
from llm_stream.client.resume import answered_custom_ids
from llm_stream.contracts import BatchObject, ResultMessage
from llm_stream.gateway.app import create_app
from llm_stream.kafka.pending_requests import PendingRequests
from llm_stream.protocols import ResultPublisher
from llm_stream.settings import Settings
from llm_stream.worker.app import WorkerApp
from tests.fakes import FakeEngine
from tests.gateway_support import jsonl, keyed_settings, serving
from tests.integration.test_gateway import COMPLETIONS, KEY, _client, _line, _until_final

pytestmark = pytest.mark.broker

LINES = 24


@pytest.fixture
async def settings(isolated_settings: Settings) -> Settings:
    keyed = await keyed_settings(isolated_settings, KEY)
    return keyed.with_overrides(batch_stall_after_s=2.0, batch_stall_check_s=0.5)


class LosingPublisher:
    """The worker's result publisher, dropping the results of ``lost`` custom_ids (while
    ``losing``) as if the broker had acknowledged and then lost them."""

    def __init__(self, inner: ResultPublisher, lost: set[str]) -> None:
        self.inner, self.lost, self.losing, self.dropped = inner, lost, True, 0

    async def publish_result(self, result: ResultMessage, headers: Mapping[str, str]) -> None:
        if self.losing and result.custom_id in self.lost:
            self.dropped += 1
            return
        await self.inner.publish_result(result, headers)

    async def publish_dead_letter(
        self, value: bytes | None, key: bytes | None, headers: Mapping[str, str]
    ) -> None:
        await self.inner.publish_dead_letter(value, key, headers)


def _environment(settings: Settings) -> dict[str, str]:
    """The settings a CLI process needs to find this test's topics."""
    return {
        "LLM_STREAM_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "LLM_STREAM_BATCH_STATUS_TOPIC": settings.batch_status_topic,
        "LLM_STREAM_BATCHES_TOPIC": settings.batches_topic,
        "LLM_STREAM_RESULTS_TOPIC": settings.results_topic,
        "LLM_STREAM_REQUESTS_TOPIC": settings.requests_topic,
        "LLM_STREAM_OUTPUT_DIR": str(settings.output_dir),
    }


async def _run(role: WorkerApp | AggregatorApp) -> asyncio.Task[Any]:
    return asyncio.create_task(role.run())


async def _stop(role: WorkerApp | AggregatorApp, task: asyncio.Task[Any]) -> None:
    role.stopping.set()
    await asyncio.wait_for(task, 60)


async def test_a_batch_that_lost_results_is_reported_stalled_and_resumed(
    settings: Settings,
) -> None:
    lines = [_line(f"p{number}") for number in range(LINES)]
    worker, aggregator = WorkerApp(settings, FakeEngine()), AggregatorApp(settings)
    lost = {line["custom_id"] for line in lines[: LINES // 2]}
    losing = LosingPublisher(worker.pipeline._publisher, lost)
    worker.pipeline._publisher = losing
    working = await _run(worker)
    aggregating: asyncio.Task[Any] | None = None
    pending = PendingRequests(settings)
    try:
        async with serving(create_app(settings)) as base:
            client = _client(base)
            uploaded = await client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
            created = await client.batches.create(
                input_file_id=uploaded.id, endpoint=COMPLETIONS, completion_window="24h"
            )
            deadline = time.monotonic() + 60
            while await pending.any_pending(["echo"]):  # the worker answered and committed all
                assert time.monotonic() < deadline, "the worker did not commit every request"
                await asyncio.sleep(0.2)
            assert losing.dropped == LINES // 2
            losing.losing = False  # the broker is well again
            batch = BatchObject.model_validate(
                (await client.batches.retrieve(created.id)).model_dump()
            )
            survived = await answered_custom_ids(settings, batch)
            assert survived == {line["custom_id"] for line in lines} - lost  # the loss is real

            aggregating = await _run(aggregator)
            started = time.monotonic()
            while True:
                shown = await client.batches.retrieve(created.id)
                errors = (shown.errors.data if shown.errors else None) or []
                if any(error.code == "batch_stalled" for error in errors):
                    break
                assert time.monotonic() - started < 60, shown
                await asyncio.sleep(0.2)
            assert shown.status == "in_progress"
            assert shown.request_counts is not None
            assert shown.request_counts.completed == LINES - LINES // 2

            async with httpx.AsyncClient(base_url=base) as http:
                resumed = await http.post(
                    f"/v1/batches/{created.id}/resume",
                    headers={"Authorization": f"Bearer {KEY}"},
                )
            assert resumed.status_code == 200, resumed.text
            assert resumed.json()["republished"] == LINES // 2
            assert resumed.json()["answered"] == LINES - LINES // 2

            final, _ = await _until_final(client, created.id)
            assert final.status == "completed", final
            assert final.request_counts is not None
            assert final.request_counts.completed == LINES
            assert final.output_file_id is not None
            content = (await client.files.content(final.output_file_id)).content
            custom_ids = [orjson.loads(line)["custom_id"] for line in content.splitlines()]
            assert sorted(custom_ids) == sorted(line["custom_id"] for line in lines)
            assert not final.errors or not final.errors.data
            async with httpx.AsyncClient(base_url=base) as http:
                again = await http.post(
                    f"/v1/batches/{created.id}/resume",
                    headers={"Authorization": f"Bearer {KEY}"},
                )
            assert again.status_code == 400
            assert "completed: there is nothing to resume" in again.json()["error"]["message"]
            cli = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "llm_stream",
                "resume",
                created.id,
                env={**os.environ, **_environment(settings)},
                stderr=asyncio.subprocess.PIPE,
            )
            _, stderr = await cli.communicate()
            assert cli.returncode == 8, stderr  # the CLI's "cannot resume"
            assert b"nothing to resume" in stderr
    finally:
        if aggregating is not None:
            await _stop(aggregator, aggregating)
        await _stop(worker, working)
        await pending.close()
