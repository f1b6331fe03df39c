"""The pure parts of ``llm-stream bench``: prompts, flags, request lines, tallies, figures."""

from __future__ import annotations

import argparse
from typing import Any

import orjson
import pytest

from llm_stream.cli import bench
from llm_stream.cli.main import build_parser
from llm_stream.contracts import RequestMessage


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
    prompts = bench.build_prompts(300)
    assert prompts == bench.build_prompts(300)
    assert len(set(prompts)) == 300
    assert prompts[0] == "Request 0: tell me about Kafka partitions and consumer groups"


def test_warmup_prompts_share_no_prompt_with_measured_ones() -> None:
    warmup = bench.build_prompts(8, label="Warm-up")
    assert not set(warmup) & set(bench.build_prompts(8))


def test_defaults_apply_when_no_engine_arg_is_given() -> None:
    args = _parse()
    assert (args.prompts, args.max_tokens, args.max_in_flight) == (256, 32, None)
    assert args.bootstrap_servers is None
    assert not args.json
    merged = bench.merge_engine_flags(
        bench.DEFAULT_ENGINE_FLAGS, bench.split_engine_args(args.engine_arg)
    )
    assert merged == list(bench.DEFAULT_ENGINE_FLAGS)


def test_an_engine_arg_replaces_the_default_of_the_same_option() -> None:
    args = _parse("--engine-arg=--dtype=bfloat16", "--engine-arg=--max_model_len 512")
    merged = bench.merge_engine_flags(
        bench.DEFAULT_ENGINE_FLAGS, bench.split_engine_args(args.engine_arg)
    )
    assert merged == ["--enforce-eager", "--seed=0", "--dtype=bfloat16", "--max_model_len", "512"]


def test_a_negated_boolean_replaces_the_default_and_new_options_are_appended() -> None:
    merged = bench.merge_engine_flags(
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
    assert bench.flag_name(token) == name


def test_request_lines_are_valid_request_messages_that_ignore_eos() -> None:
    lines = bench.request_lines("batch-1", ["a", "b"], 7)
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


def test_a_tally_counts_each_request_once_and_ignores_other_batches() -> None:
    tally = bench.ResultTally("b", ["req-0", "req-1"])
    tally.add(_result("req-0"))
    tally.add(_result("req-0", tokens=99))  # a redelivery
    tally.add(_result("req-1", batch="other"))
    assert (tally.pending, tally.completion_tokens) == (1, 4)
    tally.add(_result("req-1", tokens=5))
    assert (tally.pending, tally.completion_tokens) == (0, 9)


def test_a_tally_fails_loudly_on_an_error_result() -> None:
    tally = bench.ResultTally("b", ["req-0"])
    with pytest.raises(bench.BenchError, match="req-0 was not answered with 200"):
        tally.add(_result("req-0", status=400))


def test_token_totals_must_match_every_request_running_to_max_tokens() -> None:
    bench.check_tokens("worker", bench.Measurement(64, 1.0), 64)
    with pytest.raises(bench.BenchError, match="63 tokens, expected 64"):
        bench.check_tokens("worker", bench.Measurement(63, 1.0), 64)


def test_summary_gives_tokens_per_second_and_the_worker_to_offline_ratio() -> None:
    summary = bench.summarise(
        bench.Measurement(1000, 2.0),
        bench.Measurement(1000, 2.5),
        prompts=10,
        max_tokens=100,
        max_in_flight=256,
        device="cpu (2 cores)",
        vllm_version="0.0",
        engine_flags=["--seed=0"],
        scheduler="--max-num-seqs=256",
    )
    assert summary["offline"] == {"output_tokens": 1000, "seconds": 2.0, "tokens_per_s": 500.0}
    assert summary["worker"]["tokens_per_s"] == 400.0
    assert summary["ratio"] == 0.8
    table = bench.format_table(summary)
    assert "ratio worker/offline: 0.800" in table
    assert "500.0" in table
    assert "400.0" in table
    assert "cpu (2 cores)" in table


def test_a_zero_duration_gives_no_division_error() -> None:
    assert bench.Measurement(10, 0.0).tokens_per_s == 0.0
    assert bench.summarise(bench.Measurement(0, 0.0), bench.Measurement(1, 1.0))["ratio"] == 0.0


def test_each_run_gets_its_own_topics_and_group() -> None:
    one, two = bench.bench_settings("h:1", "aaaa"), bench.bench_settings("h:1", "bbbb")
    assert one["bootstrap_servers"] == "h:1"
    names = {k: v for k, v in one.items() if k != "bootstrap_servers"}
    assert len(set(names.values())) == len(names)
    assert not set(names.values()) & set(two.values())
