"""Fixtures of the aggregator's unit tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_stream.aggregator.core import BatchAggregator
from llm_stream.files.store import LocalFileStore
from tests.fakes import FakeStatusPublisher

Make = Callable[..., BatchAggregator]


@pytest.fixture
def make(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Make]:
    """Aggregators spooling in a directory of the test's own, closed after the test."""
    made: list[BatchAggregator] = []
    root = tmp_path_factory.mktemp("spool")

    def build(output: Path, status: FakeStatusPublisher, **kwargs: Any) -> BatchAggregator:
        made.append(BatchAggregator(LocalFileStore(output), status, spool_root=root, **kwargs))
        return made[-1]

    yield build
    for aggregator in made:
        aggregator.close()
