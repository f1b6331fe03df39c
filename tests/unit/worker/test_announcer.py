from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from llm_stream.contracts import WorkerAnnouncement
from llm_stream.settings import Settings
from llm_stream.worker import announcer as announcer_module
from llm_stream.worker.announcer import WorkerAnnouncer


class _Producer:
    sent: ClassVar[list[tuple[str, bytes | None, bytes]]] = []
    fail: ClassVar[bool] = False

    def __init__(self, **kwargs: Any) -> None:
        self.stopped = False

    async def send_and_wait(self, topic: str, value: bytes | None, key: bytes) -> None:
        if _Producer.fail:
            raise ConnectionError("broker unreachable")
        _Producer.sent.append((topic, value, key))

    async def stop(self) -> None:
        self.stopped = True


@pytest.fixture(autouse=True)
def producer(monkeypatch: pytest.MonkeyPatch) -> None:
    async def start_client(client: Any, connection: Any) -> None:
        pass

    _Producer.sent, _Producer.fail = [], False
    monkeypatch.setattr(announcer_module, "AIOKafkaProducer", _Producer)
    monkeypatch.setattr(announcer_module, "start_client", start_client)


def _announcer(**overrides: Any) -> WorkerAnnouncer:
    settings = Settings(workers_topic="w", worker_heartbeat_interval_s=0.01, **overrides)
    return WorkerAnnouncer(
        settings,
        models=["small"],
        consumer_group="g.small",
        topics=["r", "r.small"],
        max_concurrency=8,
    )


async def test_a_worker_announces_what_it_serves_every_interval_then_withdraws() -> None:
    announcer = _announcer(worker_expiry_s=30)
    running = asyncio.create_task(announcer.run())
    await asyncio.sleep(0.05)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await announcer.withdraw()
    *beats, tombstone = _Producer.sent
    assert len(beats) >= 2
    first = WorkerAnnouncement.model_validate_json(beats[0][1] or b"")
    assert (first.models, first.consumer_group, first.topics) == (
        ["small"],
        "g.small",
        ["r", "r.small"],
    )
    assert (first.max_concurrency, first.expires_after_s) == (8, 30)
    assert {topic for topic, _, _ in _Producer.sent} == {"w"}
    assert {key for _, _, key in _Producer.sent} == {announcer.worker_id.encode()}
    assert tombstone[1] is None


async def test_a_failed_heartbeat_is_tried_again_and_no_tombstone_follows_no_announcement() -> None:
    announcer = _announcer()
    _Producer.fail = True
    running = asyncio.create_task(announcer.run())
    await asyncio.sleep(0.03)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    assert announcer.announced == 0  # it kept trying, it did not stop
    _Producer.fail = False
    await announcer.withdraw()
    assert _Producer.sent == []


def test_worker_ids_differ() -> None:
    assert _announcer().worker_id != _announcer().worker_id


async def test_the_endpoints_are_announced_once_the_engine_knows_them() -> None:
    served: list[str] | None = None
    settings = Settings(workers_topic="w", worker_heartbeat_interval_s=0.01)
    announcer = WorkerAnnouncer(
        settings,
        models=["small"],
        consumer_group="g",
        topics=["r"],
        max_concurrency=1,
        endpoints=lambda: served,
    )
    assert announcer.announcement().endpoints is None  # still starting: not known
    served = ["/v1/embeddings", "/score"]
    assert announcer.announcement().endpoints == ["/v1/embeddings", "/score"]
