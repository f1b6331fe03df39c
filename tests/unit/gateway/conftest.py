"""A gateway over a real local file store and an in-memory stream: no broker needed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llm_stream.files.store import LocalFileStore
from llm_stream.gateway.app import create_app
from llm_stream.settings import Settings
from tests.gateway_support import FakeBatchStream


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(output_dir=tmp_path / "batches")


@pytest.fixture
def store(settings: Settings) -> LocalFileStore:
    return LocalFileStore(settings.output_dir)


@pytest.fixture
def stream() -> FakeBatchStream:
    return FakeBatchStream()


@pytest.fixture
def client(
    settings: Settings, store: LocalFileStore, stream: FakeBatchStream
) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store=store, stream=stream)) as test_client:
        yield test_client
