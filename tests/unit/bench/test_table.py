"""The bench's table: which figures meet the issue's targets, and what the table shows."""

from __future__ import annotations

from typing import Any

from llm_stream.bench import suite
from llm_stream.bench import table as bench_table


def _summary(**figures: Any) -> dict[str, Any]:
    context = {"date": "2026-01-01", "prompts": 8, "max_tokens": 4, "repeat": 3}
    return {**context, "device": "cpu (2 cores)", "smoke": False, **figures}


def test_targets_say_which_figures_meet_the_issue() -> None:
    summary = _summary(
        stream_vs_offline=0.98,
        run_batch_vs_vllm=1.2,
        aggregator_lines_s=150_000,
        overhead_us_per_msg=1000.0,
        rss_100k_vs_1k=1.05,
    )
    met = {key: check["met"] for key, check in bench_table.targets(summary).items()}
    assert met == {
        "stream_vs_offline": True,
        "run_batch_vs_vllm": False,
        "aggregator_lines_s": True,
        "overhead_us_per_msg": False,
        "rss_100k_vs_1k": True,
    }
    assert bench_table.targets(_summary()) == {}


def test_the_table_shows_what_ran_and_flags_a_smoke_run() -> None:
    figures = {
        "vllm_version": "0.0",
        "engine_flags": ["--seed=0"],
        "scheduler": {"offline": {"max_num_seqs": 256}},
        "offline_tok_s": 14_000.0,
        "offline_tok_s_range": [13_000.0, 15_000.0],
        "stream_tok_s": 12_600.0,
        "stream_tok_s_range": [12_000.0, 13_000.0],
        "stream_vs_offline": 0.9,
        "stream_vs_offline_by_round": [0.9, 0.8766, 1.0],
    }
    summary = _summary(**figures)
    summary["targets"] = bench_table.targets(summary)
    table = bench_table.format_table(summary)
    assert "8 prompts x 4 tokens" in table
    assert "scheduler (offline): max_num_seqs=256" in table
    assert "14,000" in table
    assert "13,000 - 15,000" in table
    assert ">= 0.97: NOT met" in table
    assert "worker / offline, round by round: 0.900, 0.877, 1.000" in table
    assert "AsyncLLM" not in table  # not measured, not shown
    assert bench_table.SMOKE_WARNING not in table
    assert bench_table.format_table({**summary, "smoke": True}).startswith(
        bench_table.SMOKE_WARNING
    )


def test_the_table_holds_the_worker_to_asyncllm_where_both_ran() -> None:
    rates = {"offline": [100.0, 100.0, 100.0], "async": [90.0, 96.0, 100.0]}
    rates["stream"] = [90.0, 95.04, 102.0]
    table = bench_table.format_table(_summary(**suite.side_ratios(rates)))
    assert "    worker / AsyncLLM                             0.99" in table
    assert "worker / AsyncLLM, round by round: 1.000, 0.990, 1.020" in table
