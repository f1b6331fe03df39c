"""A cancelled batch in the pipeline: nothing more of it runs, each of its records still ends in
exactly one result line (``batch_cancelled``), and other batches go on as before."""

from __future__ import annotations

import asyncio

import orjson
from prometheus_client import REGISTRY

from llm_stream.batch.result_lines import BATCH_CANCELLED, output_line
from llm_stream.contracts import ResponseData, ResultMessage
from llm_stream.engine.protocol import EngineReply, EngineRequest
from llm_stream.protocols import IncomingRecord
from llm_stream.worker.core import RequestPipeline
from tests.fakes import FakeEngine, FakePublisher

TOPIC = "requests"


def _record(batch_id: str, offset: int, prompt: str, partition: int = 0) -> IncomingRecord:
    line = {
        "batch_id": batch_id,
        "custom_id": f"{batch_id}-{offset}",
        "method": "POST",
        "url": "/v1/completions",
        "body": {"prompt": prompt},
    }
    return IncomingRecord(TOPIC, partition, offset, orjson.dumps(line))


class SwallowingEngine(FakeEngine):
    """Answers a cancelled call as vLLM's serving layer does: "Client disconnected", no raise
    (``OpenAIServingCompletion`` catches the CancelledError after ``AsyncLLM`` aborted)."""

    def __init__(self, delays: dict[str, float]) -> None:
        super().__init__(delays)
        self.aborted = 0

    async def serve(self, request: EngineRequest) -> EngineReply:
        try:
            return await super().serve(request)
        except asyncio.CancelledError:
            self.aborted += 1
            body = {"error": {"message": "Client disconnected", "code": 400}}
            return EngineReply(ResponseData(status_code=400, request_id="", body=body))


async def _pipeline(engine: FakeEngine) -> tuple[RequestPipeline, FakePublisher]:
    publisher = FakePublisher()
    pipeline = RequestPipeline(engine, publisher, max_in_flight=16)
    await pipeline.assigned({(TOPIC, 0): 0, (TOPIC, 1): 0})
    return pipeline, publisher


def _cancelled(stage: str) -> float:
    value = REGISTRY.get_sample_value("llm_stream_requests_cancelled_total", {"stage": stage})
    return value or 0.0


def _by_custom_id(publisher: FakePublisher) -> dict[str, ResultMessage]:
    results = [result for result, _ in publisher.results]
    assert len(results) == len({result.custom_id for result in results}), "one line each"
    return {result.custom_id: result for result in results}


async def test_running_and_pending_requests_of_a_cancelled_batch_get_batch_cancelled_lines() -> (
    None
):
    engine = FakeEngine(delays={"slow": 30, "quick": 0.2})
    pipeline, publisher = await _pipeline(engine)
    queued_before, running_before = _cancelled("queued"), _cancelled("running")
    await pipeline.handle([_record("b1", 0, "fast")])
    await asyncio.sleep(0.05)
    await pipeline.handle([_record("b1", offset, "slow") for offset in (1, 2, 3)])
    await pipeline.handle([_record("other", 0, "quick", partition=1)])
    await asyncio.sleep(0.05)
    assert engine.running == 4

    assert pipeline.cancel_batch("b1") == 3
    await pipeline.handle([_record("b1", 4, "slow")])  # taken after the cancel: never run
    assert await pipeline.drain(grace_period=5)

    results = _by_custom_id(publisher)
    assert set(results) == {"b1-0", "b1-1", "b1-2", "b1-3", "b1-4", "other-0"}
    assert results["b1-0"].succeeded  # finished before the cancel: a real result
    assert results["other-0"].succeeded  # another batch is not touched
    for custom_id in ("b1-1", "b1-2", "b1-3", "b1-4"):
        line = orjson.loads(output_line(results[custom_id]))
        assert line["response"] is None
        assert line["error"]["code"] == BATCH_CANCELLED
        assert line["error"]["message"]
    assert len(engine.seen) == 5  # the record taken after the cancel never reached the engine
    assert pipeline.committable() == {(TOPIC, 0): 5, (TOPIC, 1): 1}
    assert _cancelled("queued") - queued_before == 1
    assert _cancelled("running") - running_before == 3


async def test_an_engine_that_answers_a_cancel_instead_of_raising_still_gives_batch_cancelled() -> (
    None
):
    engine = SwallowingEngine(delays={"slow": 30})
    pipeline, publisher = await _pipeline(engine)
    await pipeline.handle([_record("b1", offset, "slow") for offset in range(3)])
    await asyncio.sleep(0.05)
    pipeline.cancel_batch("b1")
    assert await pipeline.drain(grace_period=5)
    assert engine.aborted == 3
    results = _by_custom_id(publisher)
    assert all(result.error is not None for result in results.values())
    assert {r.error.code for r in results.values() if r.error} == {BATCH_CANCELLED}
    assert pipeline.committable() == {(TOPIC, 0): 3}


async def test_a_request_cut_by_the_drain_is_not_answered_but_redelivered() -> None:
    """The engine swallows the drain's cancel too; its "Client disconnected" answer must not
    become the request's line: the record stays uncommitted for the next owner."""
    engine = SwallowingEngine(delays={"slow": 30})
    pipeline, publisher = await _pipeline(engine)
    await pipeline.handle([_record("b1", 0, "fast"), _record("b1", 1, "slow")])
    await asyncio.sleep(0.05)
    assert not await pipeline.drain(grace_period=0.1)
    assert engine.aborted == 1
    assert [result.custom_id for result, _ in publisher.results] == ["b1-0"]
    assert pipeline.committable() == {(TOPIC, 0): 1}


async def test_cancelling_a_batch_with_nothing_in_flight_aborts_nothing() -> None:
    pipeline, publisher = await _pipeline(FakeEngine())
    assert pipeline.cancel_batch("b1") == 0
    await pipeline.handle([_record("b2", 0, "p")])
    assert await pipeline.drain(grace_period=5)
    assert [result.succeeded for result, _ in publisher.results] == [True]
