"""Start llm-stream processes as a user would, for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

SERVED_MODEL = "tiny-llama"

#: Engine flags that fit the tiny model on a 2-core CPU machine.
TINY_ENGINE_FLAGS = (
    "--served-model-name",
    SERVED_MODEL,
    "--dtype",
    "float32",
    "--max-model-len",
    "256",
    "--enforce-eager",
    "--seed",
    "0",
)


def service_env(settings: Mapping[str, str]) -> dict[str, str]:
    """The environment of a child process: LLM_STREAM_* settings plus CPU engine defaults."""
    env = {**os.environ, **{f"LLM_STREAM_{k.upper()}": v for k, v in settings.items()}}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return env


@contextmanager
def running(
    args: list[str], settings: Mapping[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``llm-stream ARGS`` until the block ends, then SIGTERM it (SIGKILL if it hangs)."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "llm_stream", *args],
            env=service_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def worker_args(model: str, served_name: str = SERVED_MODEL) -> list[str]:
    flags = [served_name if flag == SERVED_MODEL else flag for flag in TINY_ENGINE_FLAGS]
    return ["worker", "--model", model, *flags]
