"""How ``llm-stream bench`` reports: the issue's targets, met or not, and the printed table."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

#: (JSON key, comparison, bound): the targets the figures are held to.
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("stream_vs_offline", ">=", 0.97),
    ("run_batch_vs_vllm", "<=", 1.0),
    ("aggregator_lines_s", ">=", 100_000),
    ("overhead_us_per_msg", "<", 1000),
    ("rss_100k_vs_1k", "<=", 1.10),
)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}
#: (JSON key, label, unit) of each row, in the issue's order; rows absent from a run are skipped.
ROWS = (
    ("offline_tok_s", "(1) offline LLM.generate", "tok/s"),
    ("async_tok_s", "(2) AsyncLLM, all submitted at once", "tok/s"),
    ("async_vs_offline", "    AsyncLLM / offline", ""),
    ("stream_tok_s", "(3) worker fed from Kafka", "tok/s"),
    ("stream_vs_offline", "    worker / offline", ""),
    ("stream_vs_async", "    worker / AsyncLLM", ""),
    ("run_batch_s", "(4) llm-stream run-batch", "s"),
    ("vllm_run_batch_s", "    vllm run-batch", "s"),
    ("run_batch_vs_vllm", "    llm-stream / vllm wall time", ""),
    ("aggregator_lines_s", "(5) aggregator", "lines/s"),
    ("overhead_us_per_msg", "(6) worker overhead, echo engine", "us/msg"),
    ("rss_1k_mb", "(7) peak RSS, small batch", "MB"),
    ("rss_100k_mb", "    peak RSS, large batch", "MB"),
    ("rss_100k_vs_1k", "    large / small (worst role)", ""),
    ("reply_overhead_ms_p50", "(8) request/reply outside the engine, p50", "ms"),
    ("reply_overhead_ms_p99", "    p99", "ms"),
    ("reply_queued_ms_p50", "    behind queued lines, p50", "ms"),
    ("reply_queued_ms_p99", "    behind queued lines, p99", "ms"),
)
#: (side, against): each engine side against the ceiling, and the worker against the engine it
#: drives bare (both asynchronous: what is left between them is the Kafka path).
SIDE_RATIOS = (("async", "offline"), ("stream", "offline"), ("stream", "async"))
_SIDE_NAMES = {"offline": "offline", "async": "AsyncLLM", "stream": "worker"}
#: Per-round ratios (the sides run in rounds, so each round's pair saw the same machine).
BY_ROUND = tuple(
    (f"{side}_vs_{against}_by_round", f"{_SIDE_NAMES[side]} / {_SIDE_NAMES[against]}")
    for side, against in SIDE_RATIOS
)
_WIDTH = 44
SMOKE_WARNING = "SMOKE RUN: tiny sizes and short sides; these figures mean nothing."


def targets(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target whose figure was measured: the bound, the figure and whether it is met."""
    return {
        key: {
            "target": f"{op} {bound:g}",
            "value": summary[key],
            "met": _COMPARE[op](summary[key], bound),
        }
        for key, op, bound in TARGETS
        if key in summary
    }


def _number(value: float) -> str:
    return (
        f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}" if value < 10 else f"{value:.1f}"
    )


def format_table(summary: Mapping[str, Any]) -> str:
    """The run's context, one row per figure (median, range, target) and the smoke warning."""
    context = [f"repeat {summary['repeat']}", f"device {summary['device']}"]
    if "engine_flags" in summary:
        context[:0] = [f"{summary['prompts']} prompts x {summary['max_tokens']} tokens"]
        context.append(f"vLLM {summary['vllm_version']}")
    header = [f"llm-stream bench, {summary['date']}: {', '.join(context)}"]
    if "engine_flags" in summary:
        header.append(f"engine flags: {' '.join(summary['engine_flags'])}")
        header += [
            f"scheduler ({side}): " + ", ".join(f"{k}={v}" for k, v in limits.items())
            for side, limits in summary["scheduler"].items()
        ]
    if "lines" in summary:
        header.append(
            f"no-model parts: {summary['messages']} messages, {summary['lines']} result lines, "
            f"RSS at {summary['rss_small']} and {summary['rss_large']} lines"
        )
    if "latency_samples" in summary:
        header.append(
            f"request/reply: {summary['latency_samples']} idle asks, "
            f"{summary['latency_rounds']} behind {summary['latency_queued_lines']} queued "
            f"lines of priority {summary['latency_queued_priority']} "
            f"(median {summary['latency_started_before']} of them started between the ask's "
            "publish and its start), "
            f"fetch.max.wait.ms {summary['latency_fetch_max_wait_ms']}"
        )
    checks = summary.get("targets", {})
    rows = [f"{'figure':<{_WIDTH}}{'median':>10}  {'range':<22}target"]
    for key, label, unit in ROWS:
        if key not in summary:
            continue
        spread = summary.get(f"{key}_range")
        shown = f"{_number(spread[0])} - {_number(spread[1])}" if spread else ""
        check = checks.get(key)
        verdict = f"{check['target']}: {'met' if check['met'] else 'NOT met'}" if check else ""
        name = f"{label} ({unit})" if unit else label
        rows.append(f"{name:<{_WIDTH}}{_number(summary[key]):>10}  {shown:<22}{verdict}".rstrip())
    for key, label in BY_ROUND:
        if rounds := summary.get(key):
            rows.append(f"{label}, round by round: {', '.join(f'{r:.3f}' for r in rounds)}")
    lines = [*header, *rows]
    if summary.get("smoke"):
        lines = [SMOKE_WARNING, *lines, SMOKE_WARNING]
    return "\n".join(lines)
