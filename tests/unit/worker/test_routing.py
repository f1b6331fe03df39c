from __future__ import annotations

import asyncio

import pytest

from llm_stream.contracts import RequestMessage
from llm_stream.kafka.live_workers import LiveWorkers
from llm_stream.worker.request_parsing import DeadLetter, InvalidRequest
from llm_stream.worker.routing import SharedTopicClaims, model_of
from tests.unit.kafka.announcements import Clock, announcement

SHARED = "llm-stream.requests"


def _claims(own: list[str], served: dict[str, list[str]]) -> SharedTopicClaims:
    live = LiveWorkers(Clock())
    live.add([announcement(worker, models, 1000) for worker, models in served.items()])
    known = asyncio.Event()
    known.set()
    return SharedTopicClaims(SHARED, own, live, known)


async def test_a_models_own_topic_is_always_answered() -> None:
    claims = _claims(["small"], {"w": ["large"]})
    assert await claims(f"{SHARED}.small", "large")


async def test_on_the_shared_topic_each_served_model_is_answered_by_its_group_only() -> None:
    served = {"a": ["small"], "b": ["large"]}
    small, large = _claims(["small"], served), _claims(["large"], served)
    for model in ("small", "large"):
        answers = [await small(SHARED, model), await large(SHARED, model)]
        assert answers == [model == "small", model == "large"]


@pytest.mark.parametrize("model", [None, "nobody-serves-this"])
async def test_a_record_no_group_serves_is_answered_by_exactly_one(model: str | None) -> None:
    """The first model in name order answers: a 404 as vLLM's, or the default model."""
    served = {"a": ["small"], "b": ["large"], "c": ["medium"]}
    answers = [await _claims([own], served)(SHARED, model) for own in ("small", "large", "medium")]
    assert answers == [False, True, False]


async def test_a_group_alone_answers_everything_before_any_other_is_heard_of() -> None:
    claims = _claims(["small"], {})
    assert await claims(SHARED, "large")


async def test_a_record_that_may_be_another_groups_waits_for_the_announcements() -> None:
    live = LiveWorkers(Clock())
    known = asyncio.Event()
    claims = SharedTopicClaims(SHARED, ["small"], live, known)
    assert await claims(SHARED, "small")  # its own: no wait
    deciding = asyncio.create_task(claims(SHARED, "large"))
    await asyncio.sleep(0.01)
    assert not deciding.done()
    live.add([announcement("b", ["large"], 1000)])
    known.set()
    assert await deciding is False


def test_the_model_of_a_record() -> None:
    request = RequestMessage(
        batch_id="b", custom_id="c", url="/v1/completions", body={"model": "m"}
    )
    assert model_of(request) == "m"
    assert model_of(request.model_copy(update={"body": {"model": 3}})) is None
    assert model_of(InvalidRequest("b", "c", "bad")) is None
    assert model_of(DeadLetter("garbage")) is None
