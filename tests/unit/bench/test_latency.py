"""The latency part's arithmetic and how the table shows it (no timing asserted)."""

from __future__ import annotations

from llm_stream.bench import latency
from llm_stream.bench import table as bench_table


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert latency.percentile(values, 0.5) == 50.0
    assert latency.percentile(values, 0.99) == 99.0
    assert latency.percentile([3.0, 1.0, 2.0], 0.99) == 3.0  # few samples: p99 is the largest
    assert latency.percentile([7.0], 0.5) == 7.0


def test_the_table_shows_the_latency_rows_and_that_priority_is_not_applied() -> None:
    summary = {
        "date": "2026-01-01",
        "repeat": 1,
        "device": "cpu (2 cores)",
        "smoke": False,
        "reply_overhead_ms_p50": 4.2,
        "reply_overhead_ms_p99": 9.5,
        "reply_queued_ms_p50": 300.0,
        "reply_queued_ms_p99": 410.0,
        "latency_samples": 200,
        "latency_rounds": 20,
        "latency_queued_lines": 10_000,
        "latency_fetch_max_wait_ms": 20,
        "latency_queued_priority": 100,
        "latency_started_before": 512,
    }
    shown = bench_table.format_table(summary)
    assert "(8) request/reply outside the engine, p50 (ms)" in shown
    assert "behind queued lines, p99 (ms)" in shown
    assert "20 behind 10000 queued lines" in shown
    assert "lines of priority 100 (median 512 of them started between the ask's" in shown
