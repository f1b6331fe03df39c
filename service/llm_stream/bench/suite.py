"""``llm-stream bench``: the service against vLLM itself, every figure in one run.

Ratios measured on one machine in one run say what the Kafka path costs; absolute figures from
different runs or machines do not. The same prompts and sampling (greedy, ``ignore_eos``, so
every request yields exactly ``--max-tokens`` tokens; totals are checked) go through:

1. vLLM's offline ``LLM.generate`` (``bench_offline``): the ceiling;
2. vLLM's ``AsyncLLM``, every request submitted at once (``bench_async``);
3. the worker fed from Kafka (``bench_worker``), pre-published, clocked from owning its
   partitions to the last result, and its ratio to (1);
4. ``llm-stream run-batch`` against ``vllm run-batch`` on one chat file, whole processes with
   start-up (``bench.run_batch``), as a ratio of wall times;
5.-7. with no model (``bench.stream``): aggregator result lines/s, worker overhead per message
   and peak RSS for a small against a large batch;
8. request and reply's time outside the engine (``bench.latency``), p50 and p99, idle and
   behind 10,000 queued batch lines.

Engine sides (1)-(3) each run in their own process (``bench_children``), in rounds: one run of
each side per round, only one engine working at a time, so none shares the CPU or GPU with
another and drift in the machine's speed falls on all of them alike. Each side is repeated
(median and range, and per round the ratio to (1)): one noisy run cannot decide a ratio, and a
side under ``SHORT_WINDOW_S`` is refused unless ``--smoke``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from llm_stream.bench import run_batch
from llm_stream.bench.children import EngineChild, SideInfo, engine_child
from llm_stream.bench.support import (
    DEFAULT_ENGINE_FLAGS,
    STREAM_PARTS,
    WARMUP_REQUESTS,
    BenchError,
    EngineSpec,
    Run,
    Spread,
    broker,
    build_prompts,
    check_runs,
    check_window,
    merge_engine_flags,
    say,
    split_engine_args,
)
from llm_stream.bench.table import SIDE_RATIOS, format_table, targets

ENGINE_PARTS = ("offline", "async", "stream", "run-batch")
#: Request and reply's time outside the engine (``bench.latency``), idle and behind queued lines.
LATENCY_PART = "latency"
PARTS = (*ENGINE_PARTS, *STREAM_PARTS, LATENCY_PART)
#: Engine sides run in child processes: (part, module, what the table calls it, JSON prefix).
ENGINE_CHILDREN = (
    ("offline", "llm_stream.bench.offline", "offline LLM.generate", "offline"),
    ("async", "llm_stream.bench.async_engine", "AsyncLLM", "async"),
    ("stream", "llm_stream.bench.worker", "the worker fed from Kafka", "stream"),
)


@dataclass(frozen=True, slots=True)
class Sizes:
    prompts: int
    max_tokens: int
    repeat: int
    messages: int
    lines: int
    rss_small: int
    rss_large: int
    latency_samples: int = 200
    latency_rounds: int = 20
    queued: int = 10_000


REAL = Sizes(2048, 64, 3, messages=5000, lines=100_000, rss_small=1000, rss_large=100_000)
SMOKE = Sizes(
    16,
    4,
    1,
    messages=60,
    lines=300,
    rss_small=30,
    rss_large=300,
    latency_samples=10,
    latency_rounds=2,
    queued=200,
)
MIN_REAL_REPEAT = 3


def parse_only(text: str | None) -> tuple[str, ...]:
    """``--only``'s comma-separated parts, in run order; every part when not given."""
    if not text:
        return PARTS
    asked = {part.strip() for part in text.split(",") if part.strip()}
    if unknown := sorted(asked - set(PARTS)):
        raise BenchError(f"--only: unknown part(s) {', '.join(unknown)}; choose from {PARTS}")
    return tuple(part for part in PARTS if part in asked)


def resolve_sizes(args: argparse.Namespace) -> Sizes:
    """The smoke or real sizes, with what the command line set; refuses a real run under 3."""
    base = SMOKE if args.smoke else REAL
    chosen = {
        name: value
        for name in ("prompts", "max_tokens", "repeat")
        if (value := getattr(args, name)) is not None
    }
    sizes = replace(base, **chosen)
    if min(sizes.prompts, sizes.max_tokens, sizes.repeat) < 1:
        raise BenchError("--prompts, --max-tokens and --repeat must be at least 1")
    if not args.smoke and sizes.repeat < MIN_REAL_REPEAT:
        raise BenchError(f"--repeat must be at least {MIN_REAL_REPEAT} (or use --smoke)")
    return sizes


def spread_figures(key: str, values: Sequence[float], digits: int = 1) -> dict[str, Any]:
    spread = Spread.of(values)
    return {key: round(spread.median, digits), f"{key}_range": _range(spread.low, spread.high)}


def ratio_figures(key: str, top: Sequence[float], bottom: Sequence[float]) -> dict[str, Any]:
    """Ratio of medians, and its widest range (worst top over best bottom, and the reverse)."""
    up, down = Spread.of(top), Spread.of(bottom)
    return {
        key: round(up.median / down.median, 4),
        f"{key}_range": [round(up.low / down.high, 4), round(up.high / down.low, 4)],
    }


def side_ratios(rates: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """``<side>_vs_<against>``: the ratio of medians with its range, and round by round (the
    sides run in rounds, so each round's pair saw the same machine)."""
    figures: dict[str, Any] = {}
    for side, against in SIDE_RATIOS:
        if side in rates and against in rates:
            key = f"{side}_vs_{against}"
            figures.update(ratio_figures(key, rates[side], rates[against]))
            paired = zip(rates[side], rates[against], strict=True)
            figures[f"{key}_by_round"] = [round(mine / theirs, 4) for mine, theirs in paired]
    return figures


def _range(low: float, high: float) -> list[float]:
    return [round(low, 1), round(high, 1)]


def _interleaved_runs(
    sides: Sequence[tuple[str, str, str]],
    spec: EngineSpec,
    workdir: Path,
    bootstrap: str | None,
    repeat: int,
) -> dict[str, tuple[list[Run], SideInfo]]:
    """Every side's runs, by prefix. The sides start one after the other (each warms up alone),
    then run in rounds, each round in the reverse order of the one before: drift in the
    machine's speed falls on every side alike, and only one engine works at a time."""
    with contextlib.ExitStack() as stack:
        children: dict[str, EngineChild] = {}
        for module, side, prefix in sides:
            child_spec = spec
            if prefix == "stream":
                servers = stack.enter_context(broker(bootstrap))
                child_spec = {**spec, "bootstrap_servers": servers}
            say(f"{side}: starting its engine and warming up")
            children[prefix] = stack.enter_context(engine_child(module, child_spec, workdir, side))
        runs: dict[str, list[Run]] = {prefix: [] for prefix in children}
        order = list(children)
        for round_number in range(1, repeat + 1):
            for prefix in order:
                run = children[prefix].run()
                runs[prefix].append(run)
                rate = run["output_tokens"] / run["seconds"]
                say(f"round {round_number}/{repeat}: {children[prefix].side} {rate:,.0f} tok/s")
            order.reverse()
        return {prefix: (runs[prefix], child.info) for prefix, child in children.items()}


def _engine_figures(
    args: argparse.Namespace, parts: Sequence[str], sizes: Sizes, workdir: Path
) -> dict[str, Any]:
    flags = merge_engine_flags(DEFAULT_ENGINE_FLAGS, split_engine_args(args.engine_arg))
    prompts = build_prompts(sizes.prompts)
    spec = EngineSpec(
        model=args.model,
        engine_flags=flags,
        prompts=prompts,
        warmup_prompts=build_prompts(WARMUP_REQUESTS, label="Warm-up"),
        max_tokens=sizes.max_tokens,
        max_in_flight=args.max_in_flight,
    )
    figures: dict[str, Any] = {"engine_flags": flags, "scheduler": {}}
    sides = [
        (module, side, prefix) for part, module, side, prefix in ENGINE_CHILDREN if part in parts
    ]
    say(f"{len(prompts)} prompts x {sizes.max_tokens} tokens, {sizes.repeat} round(s)")
    measured = _interleaved_runs(sides, spec, workdir, args.bootstrap_servers, sizes.repeat)
    rates: dict[str, list[float]] = {}
    expected_tokens = len(prompts) * sizes.max_tokens
    for _module, side, prefix in sides:
        runs, info = measured[prefix]
        check_runs(side, runs, expected_tokens, smoke=args.smoke)
        rates[prefix] = [r["output_tokens"] / r["seconds"] for r in runs]
        figures.update(spread_figures(f"{prefix}_tok_s", rates[prefix]))
        figures["scheduler"][prefix] = info["scheduler"]
        figures.setdefault("device", info["device"])
        figures.setdefault("vllm_version", info["vllm_version"])
    figures.update(side_ratios(rates))
    if "run-batch" in parts:
        walls = run_batch.measure(
            args.model, flags, prompts, sizes.max_tokens, sizes.repeat, workdir
        )
        ours, theirs = walls[run_batch.OURS], walls[run_batch.THEIRS]
        for side, seconds in walls.items():
            check_window(side, seconds, smoke=args.smoke)
        figures.update(spread_figures("run_batch_s", ours, digits=2))
        figures.update(spread_figures("vllm_run_batch_s", theirs, digits=2))
        figures.update(ratio_figures("run_batch_vs_vllm", ours, theirs))
    return figures


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of the parts asked for; raises BenchError when one would not be honest."""
    parts = parse_only(args.only)
    sizes = resolve_sizes(args)
    engine_parts = [part for part in parts if part in ENGINE_PARTS]
    if engine_parts and not args.model:
        raise BenchError(f"--model is required for {', '.join(engine_parts)}")
    summary: dict[str, Any] = {
        "smoke": args.smoke,
        "date": datetime.date.today().isoformat(),
        "parts": list(parts),
        "prompts": sizes.prompts,
        "max_tokens": sizes.max_tokens,
        "repeat": sizes.repeat,
    }
    if engine_parts:
        with tempfile.TemporaryDirectory(prefix="llm-stream-bench-") as tmp:
            summary.update(_engine_figures(args, parts, sizes, Path(tmp)))
    if stream_parts := [part for part in parts if part in STREAM_PARTS]:
        from llm_stream.bench import stream  # the roles load only for these parts

        say(f"with no model: {', '.join(stream_parts)}")
        summary.update(
            stream.run(
                bootstrap=args.bootstrap_servers,
                repeat=sizes.repeat,
                messages=sizes.messages,
                lines=sizes.lines,
                rss_small=sizes.rss_small,
                rss_large=sizes.rss_large,
                parts=stream_parts,
            )
        )
        summary.update(messages=sizes.messages, lines=sizes.lines)
        summary.update(rss_small=sizes.rss_small, rss_large=sizes.rss_large)
    if LATENCY_PART in parts:
        from llm_stream.bench import latency

        say(
            f"request/reply latency: {sizes.latency_samples} idle, {sizes.latency_rounds} "
            f"behind {sizes.queued} queued lines"
        )
        with broker(args.bootstrap_servers) as servers, tempfile.TemporaryDirectory() as tmp:
            summary.update(
                asyncio.run(
                    latency.measure(
                        servers,
                        Path(tmp),
                        samples=sizes.latency_samples,
                        rounds=sizes.latency_rounds,
                        queued=sizes.queued,
                        fetch_max_wait_ms=getattr(args, "fetch_max_wait_ms", None),
                    )
                )
            )
    if "device" not in summary:
        from llm_stream.bench.offline import describe_device

        summary["device"] = describe_device()
    summary["targets"] = targets(summary)
    return summary


def write_json(path: Path, summary: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(summary, indent=2) + "\n")


def main(args: argparse.Namespace) -> int:
    try:
        summary = run_bench(args)
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1
    print(format_table(summary), flush=True)
    if args.json:
        write_json(args.json, summary)
    return 0
