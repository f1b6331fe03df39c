"""Fixtures of the client's unit tests."""

from __future__ import annotations

import pytest

from llm_stream.client import batch_client
from tests.unit.client.fakes import FakeProducer


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> FakeProducer:
    """The producer every ``BatchClient`` of the test publishes with: a fake that records."""
    fake = FakeProducer()
    monkeypatch.setattr(batch_client, "new_producer", lambda config: fake)
    return fake
