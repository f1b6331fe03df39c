"""The bench's shared pieces: prompts, engine flags merged over the defaults, and the checks
every measured run must pass."""

from __future__ import annotations

import argparse

import pytest

from llm_stream.bench.support import (
    DEFAULT_ENGINE_FLAGS,
    BenchError,
    Run,
    build_prompts,
    check_runs,
    flag_name,
    merge_engine_flags,
    split_engine_args,
)
from llm_stream.cli.main import build_parser


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", "--model", "/m", *argv])


def test_prompts_are_deterministic_and_distinct() -> None:
    prompts = build_prompts(300)
    assert prompts == build_prompts(300)
    assert len(set(prompts)) == 300
    assert prompts[0] == "Request 0: tell me about Kafka partitions and consumer groups"


def test_warmup_prompts_share_no_prompt_with_measured_ones() -> None:
    assert not set(build_prompts(8, label="Warm-up")) & set(build_prompts(8))


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
