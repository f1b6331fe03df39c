"""What every part of ``llm-stream bench`` shares: prompts, engine flags, spreads, checks.

Nothing here imports vLLM at module level, so the parent stays light (engine sides run in child
processes: ``bench_children``).
"""

from __future__ import annotations

import os
import shlex
import statistics
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from llm_stream.errors import LlmStreamError

#: Engine flags for the tiny model on a small CPU; an ``--engine-arg`` naming the same option wins.
DEFAULT_ENGINE_FLAGS = ("--dtype=float32", "--max-model-len=256", "--enforce-eager", "--seed=0")
PROMPT_TEMPLATE = "{label} {i}: tell me about Kafka partitions and consumer groups"
WARMUP_REQUESTS = 8
CHILD_TIMEOUT_S = 3600.0
#: The figures measured with no model (``bench.stream``), as ``--only`` names them.
STREAM_PARTS = ("overhead", "aggregator", "rss")
#: Below this many seconds per side, run-to-run noise swamps a ratio (seen on 2 CPU cores).
SHORT_WINDOW_S = 5.0


class BenchError(LlmStreamError, RuntimeError):
    """The benchmark cannot give an honest figure; the message says why."""


@dataclass(frozen=True, slots=True)
class Spread:
    """Median and range of repeated runs of one side."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))


class Run(TypedDict):
    """One timed run of an engine side: output tokens generated in ``seconds``."""

    output_tokens: int
    seconds: float


class EngineSpec(TypedDict):
    """What the parent sends an engine child on stdin."""

    model: str
    engine_flags: list[str]
    prompts: list[str]
    warmup_prompts: list[str]
    max_tokens: int
    #: The stream side only: the broker and the worker's ``--max-in-flight``.
    bootstrap_servers: NotRequired[str]
    max_in_flight: NotRequired[int | None]


def build_prompts(count: int, label: str = "Request") -> list[str]:
    """Distinct, deterministic prompts; warm-up ones use another label so no prefix is cached."""
    return [PROMPT_TEMPLATE.format(label=label, i=i) for i in range(count)]


def custom_ids(count: int) -> list[str]:
    return [f"req-{i}" for i in range(count)]


def split_engine_args(values: Iterable[str]) -> list[str]:
    """``--engine-arg`` values as CLI tokens; one value may hold several (``--dtype float32``)."""
    return [token for value in values for token in shlex.split(value)]


def flag_name(token: str) -> str | None:
    """The option a token sets, normalised (``--no-enforce_eager=x`` -> ``enforce-eager``)."""
    if not token.startswith("--"):
        return None
    return token[2:].split("=", 1)[0].replace("_", "-").removeprefix("no-")


def _option_groups(flags: Sequence[str]) -> list[tuple[str | None, list[str]]]:
    groups: list[tuple[str | None, list[str]]] = []
    for token in flags:
        name = flag_name(token)
        if name is not None or not groups:
            groups.append((name, [token]))
        else:
            groups[-1][1].append(token)  # a separate value of the option before
    return groups


def merge_engine_flags(defaults: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """``defaults`` minus every option ``overrides`` names (with its values), then ``overrides``."""
    overridden = {name for name, _ in _option_groups(overrides)}
    kept = [
        t for name, tokens in _option_groups(defaults) if name not in overridden for t in tokens
    ]
    return [*kept, *overrides]


def check_runs(side: str, runs: Sequence[Run], expected_tokens: int, *, smoke: bool) -> None:
    """Every run yielded ``expected_tokens`` and, unless ``smoke``, lasted ``SHORT_WINDOW_S``."""
    for run in runs:
        if run["output_tokens"] != expected_tokens:
            raise BenchError(
                f"{side} produced {run['output_tokens']} tokens, expected {expected_tokens}: "
                "requests did not all run to --max-tokens, so tokens/s would not compare"
            )
    check_window(side, [run["seconds"] for run in runs], smoke=smoke)


def check_window(side: str, seconds: Sequence[float], *, smoke: bool) -> None:
    """Refuse a side whose shortest run is under ``SHORT_WINDOW_S``: its ratio would be noise."""
    if not smoke and min(seconds) < SHORT_WINDOW_S:
        raise BenchError(
            f"{side} ran for {min(seconds):.2f} s, under {SHORT_WINDOW_S:.0f} s: too short to "
            "compare; raise --prompts (or --max-tokens)"
        )


@contextmanager
def broker(bootstrap_servers: str | None) -> Iterator[str]:
    """``bootstrap_servers`` as given, else those of an embedded broker for the block."""
    if bootstrap_servers:
        yield bootstrap_servers
        return
    from llm_stream.broker.embedded import EmbeddedBroker

    with EmbeddedBroker() as embedded:
        yield embedded.bootstrap_servers


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return env


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def engine_args(cls: Any, model: str, flags: Sequence[str]) -> Any:
    """vLLM's ``cls`` (``EngineArgs`` or ``AsyncEngineArgs``) from the bench's CLI flags."""
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = cls.add_cli_args(FlexibleArgumentParser(prog="llm-stream bench"))
    return cls.from_cli_args(parser.parse_args(["--model", model, *flags]))
