"""The role runtime's order of work: start, serve, and a clean stop that drains before its
final commit and commits before it closes the consumer. A fake loop and broker record each
step; the roles' own tests (and the integration tests) run it against a real broker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llm_stream.runtime import role as role_module
from llm_stream.runtime.role import Role
from llm_stream.settings import Settings


class _Steps(list[str]):
    """The steps taken, in order."""


class _FakeLoop:
    """A consume loop that polls until told to stop fetching."""

    def __init__(self, steps: _Steps, *, problem: str | None = None) -> None:
        self.steps = steps
        self.fetching = asyncio.Event()
        self.running = asyncio.Event()
        self._problem = problem
        self.consumer = object()

    async def start(self) -> None:
        self.steps.append("loop.start")

    async def run(self) -> None:
        self.steps.append("loop.run")
        self.running.set()
        await self.fetching.wait()

    def stop_fetching(self) -> None:
        self.steps.append("loop.stop_fetching")
        self.fetching.set()

    async def commit(self) -> None:
        self.steps.append("loop.commit")

    async def commit_or_retry(self) -> None:
        self.steps.append("loop.commit_or_retry")

    async def report_lag(self) -> None:
        pass

    def stalled_partitions(self) -> list[Any]:
        return []

    async def stop(self) -> None:
        self.steps.append("loop.stop")

    def problem(self) -> str | None:
        return self._problem


class _FakeBroker:
    def __init__(self, steps: _Steps, *, reachable: bool = True) -> None:
        self.steps = steps
        self.reachable = reachable

    async def __aenter__(self) -> _FakeBroker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.steps.append("broker.close")

    async def start(self) -> None:
        self.steps.append("broker.start")

    async def ping(self, **bounds: float) -> bool:
        return self.reachable


class _RecordingRole(Role):
    """A role whose hooks record themselves; ``failing`` watched work ends it with an error."""

    def __init__(self, steps: _Steps, *, failing: BaseException | None = None) -> None:
        super().__init__(Settings(bootstrap_servers="127.0.0.1:1", commit_interval_s=0.01))
        self.steps = steps
        self.broker = _FakeBroker(steps)  # type: ignore[assignment]
        self.loop = _FakeLoop(steps)  # type: ignore[assignment]
        self.failing = failing
        self.ticks = 0
        self.third_tick = asyncio.Event()

    def watched(self) -> list[Any]:
        return [self._fail()] if self.failing is not None else []

    async def _fail(self) -> None:
        await asyncio.sleep(0)
        assert self.failing is not None
        raise self.failing

    async def tick(self) -> None:
        self.ticks += 1
        self.steps.append("tick")
        if self.ticks == 3:
            self.third_tick.set()

    async def drain(self) -> bool:
        self.steps.append("drain")
        return True


@pytest.fixture(autouse=True)
def _no_topics_to_create(monkeypatch: pytest.MonkeyPatch) -> None:
    async def created(settings: Settings, topics: object = None) -> None:
        pass

    monkeypatch.setattr(role_module, "ensure_topics", created)


def _serving_steps(steps: _Steps) -> list[str]:
    """The steps without the periodic ones (their number depends on timing)."""
    return [step for step in steps if step not in ("tick", "loop.commit_or_retry")]


async def test_a_stop_drains_then_commits_then_closes_the_consumer_and_the_broker() -> None:
    steps = _Steps()
    role = _RecordingRole(steps)
    serving = asyncio.create_task(role.serve())
    await role.loop.running.wait()  # type: ignore[attr-defined]
    role.stopping.set()
    assert await serving is True
    assert _serving_steps(steps) == [
        "broker.start",
        "loop.start",
        "loop.run",
        "loop.stop_fetching",
        "drain",
        "loop.commit",
        "loop.stop",
        "broker.close",
    ]


async def test_watched_work_that_fails_stops_the_role_without_a_final_commit() -> None:
    steps = _Steps()
    role = _RecordingRole(steps, failing=RuntimeError("follower broke"))
    with pytest.raises(RuntimeError, match="follower broke"):
        await role.serve()
    assert "loop.commit" not in steps  # what was drained is committed by the next owner
    assert _serving_steps(steps)[-4:] == [
        "loop.stop_fetching",
        "drain",
        "loop.stop",
        "broker.close",
    ]


async def test_a_failed_topic_check_closes_the_loop_it_never_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refused(settings: Settings, topics: object = None) -> None:
        raise PermissionError("cannot create topic")

    monkeypatch.setattr(role_module, "ensure_topics", refused)
    steps = _Steps()
    with pytest.raises(PermissionError):
        await _RecordingRole(steps).serve()
    assert steps == ["loop.stop"]


async def test_every_commit_interval_the_tick_comes_before_the_commit() -> None:
    steps = _Steps()
    role = _RecordingRole(steps)
    serving = asyncio.create_task(role.serve())
    await role.third_tick.wait()  # two whole intervals done
    role.stopping.set()
    await serving
    periodic = [step for step in steps if step in ("tick", "loop.commit_or_retry")]
    assert periodic[:4] == ["tick", "loop.commit_or_retry", "tick", "loop.commit_or_retry"]


async def test_readiness_names_the_first_problem_found() -> None:
    steps = _Steps()
    role = _RecordingRole(steps)
    assert await role.readiness() is None
    role.loop = _FakeLoop(steps, problem="partition 0 stalled")  # type: ignore[assignment]
    assert await role.readiness() == "partition 0 stalled"
    role.broker.reachable = False  # type: ignore[attr-defined]
    assert await role.readiness() == "broker unreachable"
    role.stopping.set()
    assert await role.readiness() == "stopping"


async def test_a_role_without_hooks_of_its_own_is_ready_and_drained() -> None:
    role = Role(Settings(bootstrap_servers="127.0.0.1:1"))
    assert role.watched() == []
    assert await role.check() is None
    assert await role.tick() is None
    assert await role.drain() is True
