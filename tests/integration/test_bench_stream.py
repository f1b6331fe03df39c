"""A smoke run of the stream benchmark (no timing asserted: figures must exist and be sane)."""

from __future__ import annotations

import pytest

from llm_stream.cli import bench_stream

pytestmark = pytest.mark.broker


def test_the_stream_benchmark_measures_every_figure(kafka_bootstrap: str) -> None:
    figures = bench_stream.run(
        bootstrap=kafka_bootstrap, repeat=1, messages=60, lines=300, rss_small=30, rss_large=300
    )
    assert float(figures["overhead_us_per_msg"]) > 0  # type: ignore[arg-type]
    assert float(figures["aggregator_lines_s"]) > 0  # type: ignore[arg-type]
    assert set(figures["rss_mb"]) == {  # type: ignore[arg-type]
        "worker 30",
        "worker 300",
        "aggregator 30",
        "aggregator 300",
    }
    assert 0 < float(figures["rss_1k_mb"]) <= float(figures["rss_100k_mb"]) * 2  # type: ignore[arg-type]
