"""The peer comparison: vLLM's own run-batch test inputs, every endpoint it takes, through
vLLM's run-batch and ours on the same model and file; ours must answer line for line with the
same status codes, each line valid as vLLM's ``BatchRequestOutput``.

Two models: the tiny Llama as it is (chat; embeddings, score, rerank and audio lines are
endpoints it does not serve) and as an embedding model (embeddings, score and rerank; chat and
audio lines it does not serve). No speech model runs here (see docs/operations.md), so audio
lines are compared on models that do not serve them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e import vllm_run_batch_inputs as inputs
from tests.processes import TINY_ENGINE_FLAGS, service_env

pytestmark = [pytest.mark.engine, pytest.mark.broker]

EMBED_FLAGS = ("--runner", "pooling", "--convert", "embed")
_ALL_POOLING = inputs.EMBEDDINGS + inputs.SCORE + inputs.RERANK
FILES = {
    "generate": ((), inputs.CHAT + inputs.REASONING + inputs.TOOL_CALLING + _ALL_POOLING),
    "embed": (EMBED_FLAGS, _ALL_POOLING + inputs.CHAT),
}


_VLLM_ENV = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}


def _endpoint(line: dict[str, Any]) -> str:
    for name, lines in inputs.BY_ENDPOINT.items():
        if line in lines:
            return name
    raise AssertionError(f"not one of vLLM's inputs: {line}")


def _write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


def _run(module: str, model: str, source: Path, target: Path, flags: tuple[str, ...]) -> None:
    command = [sys.executable, "-m", *module.split(), "-i", str(source), "-o", str(target)]
    result = subprocess.run(
        [*command, "--model", model, *TINY_ENGINE_FLAGS, *flags],
        env=service_env({}) if module.startswith("llm_stream") else _VLLM_ENV,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize("kind", list(FILES))
def test_vllms_inputs_get_vllms_status_codes_line_for_line(
    kind: str, tiny_model: str, tmp_path: Path
) -> None:
    from vllm.entrypoints.launchers.run_batch import BatchRequestOutput

    flags, lines = FILES[kind]
    source = _write(tmp_path / "in.jsonl", lines + inputs.AUDIO)
    _run("vllm.entrypoints.openai.run_batch", tiny_model, source, tmp_path / "vllm.jsonl", flags)
    _run("llm_stream run-batch", tiny_model, source, tmp_path / "ours.jsonl", flags)
    theirs, ours = _lines(tmp_path / "vllm.jsonl"), _lines(tmp_path / "ours.jsonl")
    assert len(ours) == len(theirs) == len(lines + inputs.AUDIO)
    tried, matched = Counter[str](), Counter[str]()
    for line, our, their in zip(lines + inputs.AUDIO, ours, theirs, strict=True):
        BatchRequestOutput.model_validate(our)
        endpoint = _endpoint(line)
        tried[endpoint] += 1
        status = our["response"]["status_code"]
        assert (our["custom_id"], status) == (
            their["custom_id"],
            their["response"]["status_code"],
        ), (
            line,
            our,
            their,
        )
        if status == 200:  # the same kind of answer
            assert our["error"] is None
            our_body, their_body = our["response"]["body"], their["response"]["body"]
            assert our_body.get("object") == their_body.get("object")
            assert our_body["usage"].keys() == their_body["usage"].keys()
        else:
            assert our["response"]["body"] is None
            assert our["error"]
        matched[endpoint] += 1
    print(f"\n{kind}: vLLM's inputs matched per endpoint: {dict(matched)} of {dict(tried)}")
    statuses = Counter(line["response"]["status_code"] for line in ours)
    assert statuses[200] > 0  # the model served some of them, not refused everything
