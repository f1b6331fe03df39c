"""``llm-stream bench`` as a suite, with no engine: its options and sizes, the parts it runs,
its figures (medians, ranges, ratios) and the order its sides run in."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from llm_stream.bench import suite
from llm_stream.bench.children import SideInfo
from llm_stream.bench.support import (
    DEFAULT_ENGINE_FLAGS,
    BenchError,
    EngineSpec,
    Run,
    merge_engine_flags,
    split_engine_args,
)
from llm_stream.cli.main import build_parser


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", "--model", "/m", *argv])


def test_a_real_run_defaults_to_every_part_three_times_with_the_default_flags() -> None:
    args = _parse()
    assert (args.prompts, args.max_tokens, args.repeat, args.max_in_flight) == (None,) * 4
    assert (args.json, args.smoke, args.bootstrap_servers) == (None, False, None)
    assert suite.parse_only(args.only) == suite.PARTS
    assert suite.resolve_sizes(args) == suite.REAL
    assert suite.REAL.repeat == 3
    merged = merge_engine_flags(DEFAULT_ENGINE_FLAGS, split_engine_args(args.engine_arg))
    assert merged == list(DEFAULT_ENGINE_FLAGS)


def test_smoke_uses_tiny_sizes_unless_told_otherwise() -> None:
    assert suite.resolve_sizes(_parse("--smoke")) == suite.SMOKE
    sizes = suite.resolve_sizes(_parse("--smoke", "--prompts", "3"))
    assert (sizes.prompts, sizes.repeat, sizes.lines) == (3, 1, suite.SMOKE.lines)


def test_a_real_run_needs_three_repeats() -> None:
    with pytest.raises(BenchError, match="--repeat must be at least 3"):
        suite.resolve_sizes(_parse("--repeat", "2"))
    assert suite.resolve_sizes(_parse("--repeat", "5", "--prompts", "9")).repeat == 5
    with pytest.raises(BenchError, match="at least 1"):
        suite.resolve_sizes(_parse("--smoke", "--prompts", "0"))


def test_only_selects_parts_in_run_order_and_refuses_unknown_ones() -> None:
    assert suite.parse_only("rss, offline,run-batch") == ("offline", "run-batch", "rss")
    with pytest.raises(BenchError, match="unknown part"):
        suite.parse_only("offline,gpu")


def test_engine_parts_need_a_model() -> None:
    args = build_parser().parse_args(["bench", "--only", "offline"])
    with pytest.raises(BenchError, match="--model is required for offline"):
        suite.run_bench(args)
    assert suite.main(args) == 1


def test_json_takes_a_file() -> None:
    assert _parse("--json", "out.json").json == Path("out.json")


def test_figures_are_medians_with_ranges_and_ratios_of_medians() -> None:
    assert suite.spread_figures("offline_tok_s", [100.0, 90.0, 120.0]) == {
        "offline_tok_s": 100.0,
        "offline_tok_s_range": [90.0, 120.0],
    }
    ratio = suite.ratio_figures("stream_vs_offline", [90.0, 80.0, 95.0], [100.0, 90.0, 120.0])
    assert ratio["stream_vs_offline"] == 0.9
    assert ratio["stream_vs_offline_range"] == [round(80 / 120, 4), round(95 / 90, 4)]


def test_the_worker_is_held_to_the_ceiling_and_to_the_engine_it_drives_round_by_round() -> None:
    rates = {"offline": [100.0, 120.0, 110.0], "async": [90.0, 96.0, 110.0]}
    rates["stream"] = [90.0, 120.0]
    with pytest.raises(ValueError, match="zip"):  # unpaired rounds: a bug, not a figure
        suite.side_ratios(rates)
    rates["stream"].append(99.0)
    figures = suite.side_ratios(rates)
    assert figures["stream_vs_offline_by_round"] == [0.9, 1.0, 0.9]
    assert figures["stream_vs_async_by_round"] == [1.0, 1.25, 0.9]
    assert figures["async_vs_offline_by_round"] == [0.9, 0.8, 1.0]
    assert figures["stream_vs_async"] == round(99 / 96, 4)  # medians, not a mean of rounds
    assert not {key for key in suite.side_ratios({"stream": [1.0]}) if "_vs_" in key}


def _spec(model: str = "m") -> EngineSpec:
    return EngineSpec(
        model=model, engine_flags=[], prompts=["a", "b", "c"], warmup_prompts=[], max_tokens=4
    )


class _ScriptedChild:
    def __init__(self, prefix: str, calls: list[str]) -> None:
        self.side, self._prefix, self._calls = f"side {prefix}", prefix, calls
        self.info = SideInfo(device="d", vllm_version="v", scheduler={})

    def run(self) -> Run:
        self._calls.append(self._prefix)
        return Run(output_tokens=10, seconds=float(len(self._calls)))


def test_sides_run_in_rounds_each_in_the_reverse_order_of_the_one_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    started: list[str] = []

    @contextmanager
    def scripted(module: str, spec: EngineSpec, workdir: Path, side: str) -> Iterator[Any]:
        started.append(module)
        yield _ScriptedChild(module, calls)

    monkeypatch.setattr(suite, "engine_child", scripted)
    sides = [("offline", "o", "offline"), ("async", "a", "async")]
    measured = suite._interleaved_runs(sides, _spec(), tmp_path, None, repeat=3)
    assert started == ["offline", "async"]
    assert calls == ["offline", "async", "async", "offline", "offline", "async"]
    assert [run["seconds"] for run in measured["offline"][0]] == [1.0, 4.0, 5.0]
    assert [run["seconds"] for run in measured["async"][0]] == [2.0, 3.0, 6.0]
    assert measured["async"][1]["device"] == "d"
