"""The gateway bench's arithmetic: percentiles and the table's medians and ratios."""

from __future__ import annotations

from llm_stream.bench.gateway import Figures, Round, format_figures
from llm_stream.bench.gateway_load import Latency, Rate


def _round(p50_ms: float, per_second: float) -> Round:
    return Round(
        retrieve=Latency(10, p50_ms, p50_ms * 2),
        listing=Latency(10, p50_ms * 3, p50_ms * 4),
        retrieve_rate=Rate(50, per_second, "wrk"),
        list_rate=Rate(50, per_second / 4, "wrk"),
    )


def test_the_table_gives_medians_of_rounds_and_large_over_small_ratios() -> None:
    small = Figures(100, 1.0, 80.0, [_round(1.0, 4000), _round(9.0, 1000), _round(2.0, 3000)])
    large = Figures(100_000, 4.0, 88.0, [_round(4.0, 2000), _round(3.0, 2000), _round(5.0, 9)])
    lines = format_figures([small, large]).splitlines()
    rows = {line[:40].strip(): line[40:].split() for line in lines[1:-1]}
    assert rows["retrieve p50, 1 connection (ms)"] == ["2.00", "4.00", "2.00"]
    assert rows["retrieve req/s, many connections"] == ["3,000.00", "2,000.00", "0.67"]
    assert rows["gateway RSS after the rounds (MB)"] == ["80.00", "88.00", "1.10"]
    assert lines[-1] == "medians of 3 rounds; req/s at 50 connections, measured with wrk"
