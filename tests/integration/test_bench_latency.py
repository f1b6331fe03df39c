"""A smoke run of the bench's latency part on the real broker (no timing asserted)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llm_stream.bench import latency

pytestmark = pytest.mark.broker


def test_the_latency_part_gives_both_figures(kafka_bootstrap: str, tmp_path: Path) -> None:
    figures = asyncio.run(
        latency.measure(
            kafka_bootstrap, tmp_path, samples=4, rounds=2, queued=2000, fetch_max_wait_ms=20
        )
    )
    assert 0 < figures["reply_overhead_ms_p50"] <= figures["reply_overhead_ms_p99"]
    assert 0 < figures["reply_queued_ms_p50"] <= figures["reply_queued_ms_p99"]
    assert figures["latency_queued_lines"] == 2000
    assert figures["latency_fetch_max_wait_ms"] == 20
    # Priority: the ask starts before most of the low-priority lines ahead of it in its
    # partition (some start while the worker fetches through them: up to its in-flight room).
    assert 0 <= figures["latency_started_before"] < 2000
