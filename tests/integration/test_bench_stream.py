"""A smoke run of the no-model parts of the bench (no timing asserted: figures must be sane)."""

from __future__ import annotations

from typing import Any

import pytest

from llm_stream.bench import stream as bench_stream

pytestmark = pytest.mark.broker

SMALL: dict[str, Any] = {
    "repeat": 1,
    "messages": 60,
    "lines": 300,
    "rss_small": 30,
    "rss_large": 300,
}


def test_the_stream_benchmark_measures_every_figure(kafka_bootstrap: str) -> None:
    figures: dict[str, Any] = bench_stream.run(bootstrap=kafka_bootstrap, **SMALL)
    assert figures["overhead_us_per_msg"] > 0
    assert figures["aggregator_lines_s"] > 0
    assert set(figures["rss_mb"]) == {"worker 30", "worker 300", "aggregator 30", "aggregator 300"}
    assert 0 < figures["rss_1k_mb"] <= figures["rss_100k_mb"] * 2
    assert figures["rss_100k_vs_1k"] > 0
    low, high = figures["overhead_us_per_msg_range"]
    assert low <= figures["overhead_us_per_msg"] <= high


def test_only_the_parts_asked_for_are_measured(kafka_bootstrap: str) -> None:
    figures = bench_stream.run(bootstrap=kafka_bootstrap, parts=("aggregator",), **SMALL)
    assert set(figures) == {"aggregator_lines_s", "aggregator_lines_s_range"}
