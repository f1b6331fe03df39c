"""Topic creation warns when a non-local cluster would get topics of one replica."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from llm_stream.kafka import topics
from llm_stream.settings import Settings


class _FakeAdmin:
    """Knows no topic and creates every one it is asked for."""

    created: ClassVar[list[Any]] = []

    def __init__(self, **connection: Any) -> None:
        pass

    async def list_topics(self) -> list[str]:
        return []

    async def create_topics(self, new_topics: list[Any]) -> SimpleNamespace:
        _FakeAdmin.created.extend(new_topics)
        return SimpleNamespace(topic_errors=[(t.name, 0, None) for t in new_topics])

    async def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def fake_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    async def start_client(client: Any, connection: Any) -> None:
        pass

    _FakeAdmin.created = []
    monkeypatch.setattr(topics, "AIOKafkaAdminClient", _FakeAdmin)
    monkeypatch.setattr(topics, "start_client", start_client)


async def test_one_replica_on_a_remote_cluster_is_warned_about_when_creating(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger=topics.__name__):
        await topics.ensure_topics(Settings(bootstrap_servers="kafka-1:9092"))
    assert len(_FakeAdmin.created) == 9
    [warning] = caplog.records
    assert "replication factor 1 on kafka-1:9092" in warning.getMessage()
    assert "LLM_STREAM_TOPIC_REPLICATION_FACTOR=3" in warning.getMessage()


@pytest.mark.parametrize(
    "settings",
    [
        Settings(bootstrap_servers="127.0.0.1:9092"),
        Settings(bootstrap_servers="kafka-1:9092", topic_replication_factor=3),
    ],
)
async def test_a_local_broker_or_replicated_topics_are_not_warned_about(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=topics.__name__):
        await topics.ensure_topics(settings)
    assert len(_FakeAdmin.created) == 9
    assert caplog.records == []
