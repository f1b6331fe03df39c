"""Shared fixtures: a real broker for integration and e2e tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_stream.settings import Settings
from tests.kafka_harness import kafka_bootstrap_servers


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[tuple[str, str]]:
    """``(bootstrap_servers, kind)`` of the real broker this session runs against."""
    with kafka_bootstrap_servers() as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: tuple[str, str]) -> str:
    return kafka_broker[0]


@pytest.fixture
def unique_name() -> str:
    """A name no other test uses: topics and groups stay isolated on a shared cluster."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of the tiny deterministic model, built once per session."""
    from llm_stream.engine.tiny_model import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-model")))


@pytest.fixture
def isolated_settings(kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> Settings:
    """Settings whose topics, groups and output directory belong to this test alone."""
    return Settings(
        bootstrap_servers=kafka_bootstrap,
        requests_topic=f"{unique_name}.requests",
        results_topic=f"{unique_name}.results",
        batches_topic=f"{unique_name}.batches",
        batch_status_topic=f"{unique_name}.status",
        dead_letter_topic=f"{unique_name}.dead-letter",
        workers_topic=f"{unique_name}.workers",
        rate_counts_topic=f"{unique_name}.rate-counts",
        judgements_topic=f"{unique_name}.judgements",
        worker_group_id=f"{unique_name}.workers",
        aggregator_group_id=f"{unique_name}.aggregators",
        output_dir=tmp_path / "batches",
    )
