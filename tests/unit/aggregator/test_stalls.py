"""The stall rule: a batch is stalled only when it has had no new result for the set time and
none of its requests is pending; late results, a slow engine and a long queue are not stalls,
and a result after a stall clears it."""

from __future__ import annotations

from collections.abc import Sequence

from llm_stream.aggregator.stalls import STALLED, StallWatch, find_stalled, stalled_errors
from llm_stream.contracts import BatchManifest
from llm_stream.kafka.pending_requests import worker_groups
from llm_stream.settings import Settings

STALL_S = 600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _manifest(batch_id: str, count: int = 10, model: str = "tiny") -> BatchManifest:
    return BatchManifest(
        batch_id=batch_id, endpoint="/v1/completions", request_count=count, model=model
    )


class Pending:
    """Which models' requests are pending, and which were asked about."""

    def __init__(self, *pending: str) -> None:
        self.pending = set(pending)
        self.asked: list[list[str]] = []

    async def __call__(self, models: Sequence[str]) -> bool:
        self.asked.append(list(models))
        return bool(self.pending.intersection(models))


async def test_quiet_and_nothing_pending_is_a_stall_only_after_the_set_time() -> None:
    clock, pending = Clock(), Pending()
    watch = StallWatch(STALL_S, clock)
    batch = _manifest("b1")
    assert await find_stalled(watch, [batch], {"b1": 4}, pending) == set()
    clock.now += STALL_S - 1
    assert await find_stalled(watch, [batch], {"b1": 4}, pending) == set()
    assert pending.asked == []  # the broker is asked only about quiet batches
    clock.now += 1
    assert await find_stalled(watch, [batch], {"b1": 4}, pending) == {"b1"}
    assert pending.asked == [["tiny"]]
    assert watch.quiet_for("b1") == STALL_S


async def test_late_results_and_a_slow_engine_are_no_stall() -> None:
    clock, pending = Clock(), Pending()
    watch = StallWatch(STALL_S, clock)
    batch = _manifest("b1")
    for count in range(1, 10):  # one result every 9 minutes: slow, but coming
        clock.now += STALL_S - 60
        assert await find_stalled(watch, [batch], {"b1": count}, pending) == set()
    assert pending.asked == []


async def test_a_long_queue_is_no_stall() -> None:
    clock, pending = Clock(), Pending("tiny")  # requests uncommitted in the workers' topic
    watch = StallWatch(STALL_S, clock)
    queued, other = _manifest("b1"), _manifest("b2", model="small")
    received = {"b1": 0, "b2": 3}
    await find_stalled(watch, [queued, other], received, pending)
    clock.now += 2 * STALL_S
    assert await find_stalled(watch, [queued, other], received, pending) == {"b2"}


async def test_a_result_after_a_stall_clears_it_and_written_batches_are_forgotten() -> None:
    clock, pending = Clock(), Pending()
    watch = StallWatch(STALL_S, clock)
    batch = _manifest("b1")
    await find_stalled(watch, [batch], {"b1": 4}, pending)
    clock.now += STALL_S
    assert await find_stalled(watch, [batch], {"b1": 4}, pending) == {"b1"}
    assert await find_stalled(watch, [batch], {"b1": 5}, pending) == set()
    assert watch.quiet_for("b1") == 0
    await find_stalled(watch, [], {}, pending)
    assert watch.quiet_for("b1") == 0  # nothing kept of a batch no longer open


def test_the_batch_object_says_what_is_missing_and_how_to_resume() -> None:
    errors = stalled_errors(_manifest("b1", count=1500), received=142, quiet_s=612)
    [error] = errors["data"]  # type: ignore[index]
    assert error["code"] == STALLED
    assert "1358 of 1500 requests have no result" in error["message"]
    assert "llm-stream resume b1" in error["message"]
    assert error["line"] is None


def test_the_groups_asked_are_the_ones_that_answer_the_batch() -> None:
    shared = Settings()
    assert worker_groups(shared, ["tiny"]) == {shared.worker_group_id: [shared.requests_topic]}
    routed = Settings(route_by_model=True)
    groups = worker_groups(routed, ["tiny", "org/big"])
    assert groups[f"{routed.worker_group_id}.tiny"] == [
        routed.requests_topic,
        f"{routed.requests_topic}.tiny",
    ]
    assert len(groups) == 2


async def test_a_restarted_batch_must_be_quiet_for_the_whole_time_again() -> None:
    clock, pending = Clock(), Pending()
    watch = StallWatch(STALL_S, clock)
    batch = _manifest("b1")
    await find_stalled(watch, [batch], {"b1": 4}, pending)
    clock.now += STALL_S
    assert await find_stalled(watch, [batch], {"b1": 4}, pending) == {"b1"}
    watch.restart(["b1"])  # its results are read again: the same count is no proof yet
    clock.now += 1
    assert await find_stalled(watch, [batch], {"b1": 4}, pending) == set()
    clock.now += STALL_S
    assert await find_stalled(watch, [batch], {"b1": 4}, pending) == {"b1"}
