"""The run-batch bench: the same lines, files and flags for both run-batches, and an output that
must answer every line."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from llm_stream.bench import run_batch as bench_run_batch
from llm_stream.bench.support import BenchError


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
