from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator, Mapping

import orjson
import pytest

from llm_stream.batch import request_line
from llm_stream.contracts import ResponseData
from llm_stream.engine.protocol import EngineReply, EngineRequest
from llm_stream.protocols import IncomingRecord
from llm_stream.worker import core
from llm_stream.worker.core import RequestPipeline
from tests.fakes import FakeEngine, FakePublisher

TOPIC = "requests"


def _record(offset: int, prompt: str = "p", partition: int = 0, **fields: object) -> IncomingRecord:
    line = {
        "batch_id": "b1",
        "custom_id": f"c{offset}",
        "method": "POST",
        "url": "/v1/completions",
        "body": {"prompt": prompt},
        **fields,
    }
    return IncomingRecord(TOPIC, partition, offset, orjson.dumps(line))


class _Committed:
    """What the consume loop would commit: the pipeline's committable offsets."""

    def __init__(self, pipeline: RequestPipeline) -> None:
        self._pipeline = pipeline

    def latest(self) -> dict[tuple[str, int], int]:
        return dict(self._pipeline.committable())


async def _pipeline(
    engine: FakeEngine | None = None, max_in_flight: int = 8, max_message_bytes: int = 1_048_576
) -> tuple[RequestPipeline, FakeEngine, FakePublisher, _Committed]:
    engine = engine or FakeEngine()
    publisher = FakePublisher(max_bytes=max_message_bytes)
    pipeline = RequestPipeline(
        engine, publisher, max_in_flight=max_in_flight, max_message_bytes=max_message_bytes
    )
    await pipeline.assigned({(TOPIC, 0): 0, (TOPIC, 1): 0})
    return pipeline, engine, publisher, _Committed(pipeline)


async def _submit(pipeline: RequestPipeline, record: IncomingRecord) -> bool:
    """Hand one record over as the consume loop would (once there is capacity); False if the
    pipeline did not take it."""
    while pipeline.capacity() == 0 and not pipeline.failed.is_set():  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    before = pipeline.in_flight
    await pipeline.handle([record])
    return pipeline.in_flight > before


async def test_every_record_gets_exactly_one_result() -> None:
    pipeline, _, publisher, committer = await _pipeline()
    for offset in range(20):
        await _submit(pipeline, _record(offset, prompt=f"p{offset}"))
    assert await pipeline.drain(grace_period=5)
    custom_ids = sorted(result.custom_id for result, _ in publisher.results)
    assert custom_ids == sorted(f"c{i}" for i in range(20))
    first = publisher.results[0][0]
    assert first.response is not None
    assert first.response.status_code == 200
    assert first.id.startswith("batch_req_")
    assert committer.latest() == {(TOPIC, 0): 20}


async def test_requests_run_concurrently_up_to_the_limit() -> None:
    engine = FakeEngine(delays={f"p{i}": 0.05 for i in range(10)})
    pipeline, engine, _, _ = await _pipeline(engine, max_in_flight=4)
    for offset in range(10):
        await _submit(pipeline, _record(offset, prompt=f"p{offset}"))
    await pipeline.drain(grace_period=5)
    assert engine.max_running == 4


async def test_a_slow_request_holds_back_its_partitions_commit_only() -> None:
    engine = FakeEngine(delays={"slow": 0.3})
    pipeline, _, publisher, committer = await _pipeline(engine)
    await _submit(pipeline, _record(0, prompt="slow"))
    await _submit(pipeline, _record(1, prompt="fast"))
    await _submit(pipeline, _record(0, prompt="other", partition=1))
    await asyncio.sleep(0.05)
    assert committer.latest() == {(TOPIC, 0): 0, (TOPIC, 1): 1}
    assert len(publisher.results) == 2
    await pipeline.drain(grace_period=5)
    assert committer.latest() == {(TOPIC, 0): 2, (TOPIC, 1): 1}


async def test_submit_does_not_wait_for_earlier_requests_to_finish() -> None:
    engine = FakeEngine(delays={"slow": 1.0})
    pipeline, _, _, _ = await _pipeline(engine, max_in_flight=4)
    await asyncio.wait_for(_submit(pipeline, _record(0, prompt="slow")), 0.1)
    await asyncio.wait_for(_submit(pipeline, _record(1, prompt="slow")), 0.1)
    assert pipeline.in_flight == 2
    await pipeline.drain(grace_period=0.01)


@pytest.mark.parametrize("value", [b"garbage", b'{"custom_id": "x"}', None])
async def test_unattributable_records_go_to_the_dead_letter_topic(value: bytes | None) -> None:
    pipeline, _, publisher, committer = await _pipeline()
    await _submit(pipeline, IncomingRecord(TOPIC, 0, 0, value, key=b"k"))
    await _submit(pipeline, _record(1))
    await pipeline.drain(grace_period=5)
    assert len(publisher.dead_letters) == 1
    dead_value, headers = publisher.dead_letters[0]
    assert dead_value == value
    assert headers["x-llm-stream-source"] == f"{TOPIC}/0/0"
    assert headers["x-llm-stream-error"]
    assert [result.custom_id for result, _ in publisher.results] == ["c1"]
    assert committer.latest() == {(TOPIC, 0): 2}


async def test_malformed_but_attributable_lines_get_an_error_line() -> None:
    pipeline, engine, publisher, _ = await _pipeline()
    await _submit(pipeline, _record(0, body="nope"))
    await _submit(pipeline, _record(1, url="/v1/unknown"))
    await pipeline.drain(grace_period=5)
    by_id = {result.custom_id: result for result, _ in publisher.results}
    assert by_id["c0"].response is not None
    assert by_id["c0"].response.status_code == 400
    assert by_id["c0"].response.body is not None
    assert "body" in by_id["c0"].response.body["error"]["message"]
    assert by_id["c1"].response is not None
    assert by_id["c1"].response.status_code == 404
    assert not by_id["c0"].succeeded
    assert len(engine.seen) == 0


async def test_trace_context_travels_from_request_to_result() -> None:
    pipeline, engine, publisher, _ = await _pipeline()
    record = _record(0)
    trace_id = "a" * 32
    traced = IncomingRecord(
        record.topic,
        record.partition,
        record.offset,
        record.value,
        headers={"traceparent": f"00-{trace_id}-{'b' * 16}-01", "other": "x"},
    )
    await _submit(pipeline, traced)
    await pipeline.drain(grace_period=5)
    result_headers = publisher.results[0][1]
    assert set(result_headers) <= {"traceparent", "tracestate", "baggage"}
    # Same trace; the span id is the worker's own publish span when tracing is on.
    assert result_headers["traceparent"].split("-")[1] == trace_id
    assert engine.seen[0].trace_headers["traceparent"].split("-")[1] == trace_id


async def test_a_dead_engine_stops_the_pipeline_without_committing_the_record() -> None:
    pipeline, engine, publisher, committer = await _pipeline()
    await _submit(pipeline, _record(0))
    await pipeline.drain(grace_period=5)
    pipeline, _, publisher, committer = await _pipeline(engine)
    engine.dead = True
    await _submit(pipeline, _record(5))
    await asyncio.wait_for(pipeline.failed.wait(), 1)
    assert not await _submit(pipeline, _record(6))
    assert not await pipeline.drain(grace_period=1)
    assert publisher.results == []
    assert committer.latest() == {}


async def test_a_failed_publish_leaves_the_offset_uncommitted() -> None:
    pipeline, _, publisher, committer = await _pipeline()
    publisher.fail = True
    await _submit(pipeline, _record(0))
    await asyncio.wait_for(pipeline.failed.wait(), 1)
    await pipeline.drain(grace_period=1)
    assert isinstance(pipeline.failure, ConnectionError)
    assert committer.latest() == {}


async def test_revoked_partitions_are_forgotten_and_late_work_commits_nothing() -> None:
    engine = FakeEngine(delays={"slow": 0.2})
    pipeline, _, publisher, committer = await _pipeline(engine)
    await _submit(pipeline, _record(0))
    await _submit(pipeline, _record(1, prompt="slow"))
    await asyncio.sleep(0.05)
    assert committer.latest() == {(TOPIC, 0): 1}
    await pipeline.revoked([(TOPIC, 0)])
    assert committer.latest() == {}
    assert not pipeline.holds((TOPIC, 0))
    await pipeline.drain(grace_period=5)
    assert committer.latest() == {}  # the slow record now belongs to another owner
    assert len(publisher.results) == 2  # ...though it was still answered (at least once)


async def test_records_of_partitions_not_owned_are_not_started() -> None:
    pipeline, engine, publisher, committer = await _pipeline()
    assert not await _submit(pipeline, _record(0, partition=7))
    await pipeline.drain(grace_period=1)
    assert publisher.results == []
    assert engine.seen == []
    assert committer.latest() == {}


async def test_an_answer_too_large_to_publish_becomes_an_error_line() -> None:
    pipeline, _, publisher, committer = await _pipeline(max_message_bytes=4096)
    await _submit(pipeline, _record(0, prompt="random:20000"))
    await _submit(pipeline, _record(1))
    assert await pipeline.drain(grace_period=5)
    assert not pipeline.failed.is_set()
    by_id = {result.custom_id: result for result, _ in publisher.results}
    assert by_id["c0"].response is not None
    assert by_id["c0"].response.status_code == 413
    assert by_id["c0"].response.body is not None
    assert "LLM_STREAM_MAX_MESSAGE_BYTES" in by_id["c0"].response.body["error"]["message"]
    assert by_id["c1"].succeeded
    assert committer.latest() == {(TOPIC, 0): 2}


async def test_dead_letters_of_huge_records_carry_a_reference_not_the_value() -> None:
    pipeline, _, publisher, committer = await _pipeline(max_message_bytes=16_384)
    huge = b"{" + b"x" * 100_000
    await _submit(pipeline, IncomingRecord(TOPIC, 0, 0, huge, key=b"k" * 5000))
    assert await pipeline.drain(grace_period=5)
    value, headers = publisher.dead_letters[0]
    assert value is None
    assert headers["x-llm-stream-value-omitted"].startswith("100001 bytes")
    assert headers["x-llm-stream-source"] == f"{TOPIC}/0/0"
    assert len(headers["x-llm-stream-error"]) <= 1000
    assert committer.latest() == {(TOPIC, 0): 1}


async def test_failing_from_outside_stops_taking_work() -> None:
    pipeline, _, publisher, _ = await _pipeline()
    pipeline.fail(RuntimeError("engine died while idle"))
    assert pipeline.failed.is_set()
    assert not await _submit(pipeline, _record(0))
    assert publisher.results == []


async def test_an_unexpected_engine_error_answers_500_and_the_worker_goes_on() -> None:
    pipeline, _, publisher, committer = await _pipeline()
    await _submit(pipeline, _record(0, prompt="explode"))
    await _submit(pipeline, _record(1))
    assert await pipeline.drain(grace_period=5)
    by_id = {result.custom_id: result for result, _ in publisher.results}
    assert by_id["c0"].response is not None
    assert by_id["c0"].response.status_code == 500
    assert by_id["c0"].response.body is not None
    assert "ValueError" in by_id["c0"].response.body["error"]["message"]
    assert by_id["c1"].succeeded
    assert not pipeline.failed.is_set()
    assert committer.latest() == {(TOPIC, 0): 2}


class _RuleCheckingEngine(FakeEngine):
    """Checks the serving rules first, as the vLLM engine does."""

    async def serve(self, request: EngineRequest) -> EngineReply:
        refusal = request_line.serving_refusal(request.method, request.url, request.body)
        return EngineReply(refusal) if refusal is not None else await super().serve(request)


async def test_a_records_headers_and_serving_rules_are_worked_out_once_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counted: Counter[str] = Counter()
    headers_of, refusals_of = core.propagated_headers, request_line._refusals

    def counting_headers(headers: Mapping[str, str]) -> dict[str, str]:
        counted["headers"] += 1
        return headers_of(headers)

    def counting_refusals(method: object, url: object, body: object) -> Iterator[ResponseData]:
        counted["serving rules"] += 1
        return refusals_of(method, url, body)

    monkeypatch.setattr(core, "propagated_headers", counting_headers)
    monkeypatch.setattr(request_line, "_refusals", counting_refusals)
    pipeline, _, publisher, _ = await _pipeline(_RuleCheckingEngine())
    for answered, (record, status) in enumerate(
        ((_record(0), 200), (_record(1, method="GET"), 405))
    ):
        counted.clear()
        await _submit(pipeline, record)
        while len(publisher.results) <= answered:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        assert publisher.results[-1][0].response.status_code == status  # type: ignore[union-attr]
        assert counted == {"headers": 1, "serving rules": 1}
