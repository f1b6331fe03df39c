"""``llm-stream run-batch`` against ``vllm run-batch``: whole processes on the same chat file.

What a user waits for, start-up included: each side is one process from launch to exit, given
the same engine flags and the same ``/v1/chat/completions`` file (the bench's prompts as user
messages, greedy, ``ignore_eos``). The two sides alternate so drift on a shared machine falls on
both; every output line must be a 200 and the tokens must add up on each side.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from llm_stream.bench.support import BenchError, child_env, custom_ids, say, tail

RUN_TIMEOUT_S = 3600.0
OURS = "llm-stream run-batch"
THEIRS = "vllm run-batch"


def chat_lines(prompts: Sequence[str], max_tokens: int) -> list[bytes]:
    """One chat request per prompt; no ``model``, so each side serves its one model."""
    params = {"max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
    return [
        orjson.dumps(
            {
                "custom_id": cid,
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"messages": [{"role": "user", "content": prompt}], **params},
            }
        )
        for cid, prompt in zip(custom_ids(len(prompts)), prompts, strict=True)
    ]


def commands(model: str, flags: Sequence[str], source: Path, target: Path) -> dict[str, list[str]]:
    """Each side's command line, ``-i``/``-o`` and engine flags alike."""
    common = ["-i", str(source), "-o", str(target), "--model", model, *flags]
    return {
        OURS: [sys.executable, "-m", "llm_stream", "run-batch", *common],
        THEIRS: [sys.executable, "-m", "vllm.entrypoints.openai.run_batch", *common],
    }


def output_tokens(side: str, path: Path, expected_lines: int) -> int:
    """Completion tokens of an output file in which every line is a 200."""
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    if len(lines) != expected_lines:
        raise BenchError(f"{side} wrote {len(lines)} lines, expected {expected_lines}")
    tokens = 0
    for line in lines:
        response = line.get("response") or {}
        if response.get("status_code") != 200:
            raise BenchError(f"{side} did not answer with 200: {orjson.dumps(line)[:1500]!r}")
        tokens += int(response["body"]["usage"]["completion_tokens"])
    return tokens


def _timed(side: str, command: list[str], target: Path, log_path: Path) -> float:
    target.unlink(missing_ok=True)
    with log_path.open("wb") as log:
        started = time.perf_counter()
        try:
            done = subprocess.run(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(),
                timeout=RUN_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise BenchError(f"{side} timed out:\n{tail(log_path)}") from error
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"{side} exited with {done.returncode}:\n{tail(log_path)}")
    return seconds


def measure(
    model: str,
    flags: Sequence[str],
    prompts: Sequence[str],
    max_tokens: int,
    repeat: int,
    workdir: Path,
) -> dict[str, list[float]]:
    """Wall seconds of each side, ``repeat`` times, alternating sides."""
    source = workdir / "chat.jsonl"
    source.write_bytes(b"\n".join(chat_lines(prompts, max_tokens)) + b"\n")
    seconds: dict[str, list[float]] = {OURS: [], THEIRS: []}
    for attempt in range(repeat):
        for side in seconds:
            name = side.split()[0]
            target = workdir / f"{name}.jsonl"
            say(f"{side} on {len(prompts)} chat lines ({attempt + 1}/{repeat})")
            command = commands(model, flags, source, target)[side]
            seconds[side].append(_timed(side, command, target, workdir / f"{name}.log"))
            tokens = output_tokens(side, target, len(prompts))
            if tokens != len(prompts) * max_tokens:
                raise BenchError(
                    f"{side} produced {tokens} tokens, expected {len(prompts) * max_tokens}"
                )
    return seconds
