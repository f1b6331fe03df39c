"""The parts of ``llm-stream bench`` that need no engine: options, prompts, flags, lines, tallies,
figures, and the protocol of its engine children (with a fake side)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from llm_stream.bench import run_batch as bench_run_batch
from llm_stream.bench import stream as bench_stream
from llm_stream.bench import suite
from llm_stream.bench import table as bench_table
from llm_stream.bench.children import SideInfo, engine_child
from llm_stream.bench.support import (
    DEFAULT_ENGINE_FLAGS,
    BenchError,
    EngineSpec,
    Run,
    build_prompts,
    check_runs,
    flag_name,
    merge_engine_flags,
    split_engine_args,
)
from llm_stream.bench.worker import ResultTally, bench_settings, request_lines
from llm_stream.cli.main import build_parser
from llm_stream.contracts import RequestMessage

FAKE_SIDE = "tests.unit.bench.fake_bench_side"


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", "--model", "/m", *argv])


def _result(custom_id: str, status: int = 200, tokens: int = 4, batch: str = "b") -> dict[str, Any]:
    body = {"usage": {"completion_tokens": tokens}} if status == 200 else {"error": {}}
    return {
        "batch_id": batch,
        "custom_id": custom_id,
        "response": {"status_code": status, "body": body},
    }


def test_prompts_are_deterministic_and_distinct() -> None:
    prompts = build_prompts(300)
    assert prompts == build_prompts(300)
    assert len(set(prompts)) == 300
    assert prompts[0] == "Request 0: tell me about Kafka partitions and consumer groups"


def test_warmup_prompts_share_no_prompt_with_measured_ones() -> None:
    assert not set(build_prompts(8, label="Warm-up")) & set(build_prompts(8))


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


def test_an_engine_arg_replaces_the_default_of_the_same_option() -> None:
    args = _parse("--engine-arg=--dtype=bfloat16", "--engine-arg=--max_model_len 512")
    merged = merge_engine_flags(DEFAULT_ENGINE_FLAGS, split_engine_args(args.engine_arg))
    assert merged == ["--enforce-eager", "--seed=0", "--dtype=bfloat16", "--max_model_len", "512"]


def test_a_negated_boolean_replaces_the_default_and_new_options_are_appended() -> None:
    merged = merge_engine_flags(
        ["--enforce-eager", "--seed", "0"], ["--no-enforce-eager", "--max-num-seqs=8"]
    )
    assert merged == ["--seed", "0", "--no-enforce-eager", "--max-num-seqs=8"]


@pytest.mark.parametrize(
    ("token", "name"),
    [
        ("--dtype=float32", "dtype"),
        ("--max_model_len", "max-model-len"),
        ("--no-enable-prefix-caching", "enable-prefix-caching"),
        ("float32", None),
        ("-1", None),
    ],
)
def test_flag_names_are_normalised(token: str, name: str | None) -> None:
    assert flag_name(token) == name


def test_request_lines_are_valid_request_messages_that_ignore_eos() -> None:
    lines = request_lines("batch-1", ["a", "b"], 7)
    messages = [RequestMessage.model_validate(orjson.loads(line)) for line in lines]
    assert [m.custom_id for m in messages] == ["req-0", "req-1"]
    assert {m.batch_id for m in messages} == {"batch-1"}
    assert messages[1].url == "/v1/completions"
    assert messages[1].body == {
        "prompt": "b",
        "max_tokens": 7,
        "temperature": 0,
        "ignore_eos": True,
    }


def test_chat_lines_carry_the_same_prompts_and_sampling() -> None:
    from vllm.entrypoints.launchers.run_batch import BatchRequestInput

    lines = [orjson.loads(line) for line in bench_run_batch.chat_lines(["a", "b"], 7)]
    assert [line["custom_id"] for line in lines] == ["req-0", "req-1"]
    assert lines[1]["body"] == {
        "messages": [{"role": "user", "content": "b"}],
        "max_tokens": 7,
        "temperature": 0,
        "ignore_eos": True,
    }
    for line in lines:
        BatchRequestInput.model_validate(line)  # vLLM's run-batch accepts it


def test_both_run_batches_get_the_same_files_and_flags(tmp_path: Path) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    commands = bench_run_batch.commands("/m", ["--seed=0"], source, target)
    ours, theirs = commands[bench_run_batch.OURS], commands[bench_run_batch.THEIRS]
    assert ours[2:4] == ["llm_stream", "run-batch"]
    assert theirs[2] == "vllm.entrypoints.openai.run_batch"
    assert (
        ours[4:]
        == theirs[3:]
        == ["-i", str(source), "-o", str(target), "--model", "/m", "--seed=0"]
    )


def test_a_run_batch_output_must_answer_every_line_with_200(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    ok = {
        "custom_id": "a",
        "response": {"status_code": 200, "body": {"usage": {"completion_tokens": 3}}},
    }
    path.write_bytes(orjson.dumps(ok) + b"\n" + orjson.dumps({**ok, "custom_id": "b"}) + b"\n")
    assert bench_run_batch.output_tokens("side", path, 2) == 6
    with pytest.raises(BenchError, match="wrote 2 lines, expected 3"):
        bench_run_batch.output_tokens("side", path, 3)
    failed = {"custom_id": "c", "response": {"status_code": 400, "body": None}}
    path.write_bytes(orjson.dumps(failed) + b"\n")
    with pytest.raises(BenchError, match="did not answer with 200"):
        bench_run_batch.output_tokens("side", path, 1)


def test_a_tally_counts_each_request_once_and_ignores_other_batches() -> None:
    tally = ResultTally("b", ["req-0", "req-1"])
    tally.add(_result("req-0"))
    tally.add(_result("req-0", tokens=99))  # a redelivery
    tally.add(_result("req-1", batch="other"))
    assert (tally.pending, tally.completion_tokens) == (1, 4)
    tally.add(_result("req-1", tokens=5))
    assert (tally.pending, tally.completion_tokens) == (0, 9)


def test_a_tally_fails_loudly_on_an_error_result() -> None:
    tally = ResultTally("b", ["req-0"])
    with pytest.raises(BenchError, match="req-0 was not answered with 200"):
        tally.add(_result("req-0", status=400))


def test_every_run_must_run_to_max_tokens() -> None:
    check_runs("worker", [Run(output_tokens=64, seconds=6.0)], 64, smoke=False)
    with pytest.raises(BenchError, match="63 tokens, expected 64"):
        check_runs(
            "worker",
            [Run(output_tokens=64, seconds=6), Run(output_tokens=63, seconds=6)],
            64,
            smoke=False,
        )


def test_a_side_shorter_than_five_seconds_is_refused_unless_smoke() -> None:
    runs = [Run(output_tokens=8, seconds=9.0), Run(output_tokens=8, seconds=4.9)]
    with pytest.raises(BenchError, match=r"offline LLM.generate ran for 4.90 s.*raise --prompts"):
        check_runs("offline LLM.generate", runs, 8, smoke=False)
    check_runs("offline LLM.generate", runs, 8, smoke=True)


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


def test_each_round_gets_its_own_topics_and_group() -> None:
    one, two = bench_settings("h:1", "aaaa"), bench_settings("h:1", "bbbb")
    assert one["bootstrap_servers"] == "h:1"
    names = {k: v for k, v in one.items() if k != "bootstrap_servers"}
    assert len(set(names.values())) == len(names)
    assert not set(names.values()) & set(two.values())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_a_childs_peak_rss_is_its_own_not_its_parents() -> None:
    """Linux's ru_maxrss starts a child at its parent's RSS at fork; VmHWM does not."""
    ballast = b"\x01" * (300 << 20)  # 300 MB, every page written
    code = "from llm_stream.bench.stream import own_peak_rss_mb; print(own_peak_rss_mb())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 0 < float(done.stdout) < 250
    assert bench_stream.own_peak_rss_mb() > 300
    del ballast


def _spec(model: str = "m") -> EngineSpec:
    return EngineSpec(
        model=model, engine_flags=[], prompts=["a", "b", "c"], warmup_prompts=[], max_tokens=4
    )


def test_a_child_side_warms_up_once_then_runs_when_asked(tmp_path: Path) -> None:
    with engine_child(FAKE_SIDE, _spec(), tmp_path, "fake side") as child:
        assert child.info == {
            "device": "fake",
            "vllm_version": "0",
            "scheduler": {"max_num_seqs": 2},
        }
        runs = [child.run(), child.run()]
    assert runs == [Run(output_tokens=12, seconds=1.0), Run(output_tokens=12, seconds=2.0)]
    assert "engine logs go to stdout" in (tmp_path / "fake_bench_side.log").read_text()


def test_a_child_that_dies_warming_up_fails_the_bench_with_its_log(tmp_path: Path) -> None:
    with (
        pytest.raises(BenchError, match=r"(?s)fake side exited with 3.*could not start"),
        engine_child(FAKE_SIDE, _spec("fail-warm-up"), tmp_path, "fake side"),
    ):
        pass


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
