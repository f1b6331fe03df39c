"""The offline half of ``llm-stream bench``: vLLM's own ``LLM.generate`` on the bench's prompts.

It runs as its own process (``python -m llm_stream.cli.bench_offline RESULT_PATH``, spec as JSON on
stdin) because vLLM starts engine processes with ``spawn``, which needs a ``__main__`` guard, and
so that the engine is gone, with its memory and threads, before the worker is measured.
Only ``generate`` on the measured prompts is timed: engine start and warm-up are not.
The result file also carries the scheduler limits vLLM chose, so the worker can be given the
same ones (they depend on vLLM's usage context, which differs between the two).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TypedDict


class OfflineSpec(TypedDict):
    """What the parent sends on stdin."""

    model: str
    engine_flags: list[str]
    prompts: list[str]
    warmup_prompts: list[str]
    max_tokens: int


class OfflineResult(TypedDict):
    """What the child writes to RESULT_PATH."""

    output_tokens: int
    seconds: float
    device: str
    vllm_version: str
    max_num_seqs: int
    max_num_batched_tokens: int


def describe_device() -> str:
    """``cuda: <name>`` where torch sees a GPU, else ``cpu (<n> cores)``."""
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu ({os.cpu_count()} cores)"


def _engine_args(model: str, flags: list[str]) -> Any:
    """vLLM's ``EngineArgs`` from the same CLI flags the worker is given."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = EngineArgs.add_cli_args(FlexibleArgumentParser(prog="bench-offline"))
    return EngineArgs.from_cli_args(parser.parse_args(["--model", model, *flags]))


def measure(spec: OfflineSpec) -> OfflineResult:
    import vllm
    from vllm import LLM, SamplingParams

    llm = LLM.from_engine_args(_engine_args(spec["model"], spec["engine_flags"]))
    try:
        params = SamplingParams(temperature=0, max_tokens=spec["max_tokens"], ignore_eos=True)
        llm.generate(spec["warmup_prompts"], params, use_tqdm=False)
        started = time.perf_counter()
        outputs = llm.generate(spec["prompts"], params, use_tqdm=False)
        seconds = time.perf_counter() - started
        scheduler = llm.llm_engine.vllm_config.scheduler_config
        return OfflineResult(
            output_tokens=sum(len(c.token_ids) for out in outputs for c in out.outputs),
            seconds=seconds,
            device=describe_device(),
            vllm_version=str(vllm.__version__),
            max_num_seqs=int(scheduler.max_num_seqs),
            max_num_batched_tokens=int(scheduler.max_num_batched_tokens),
        )
    finally:
        llm.llm_engine.engine_core.shutdown()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(
            "usage: python -m llm_stream.cli.bench_offline RESULT_PATH < spec.json", file=sys.stderr
        )
        return 2
    spec: OfflineSpec = json.load(sys.stdin)
    Path(argv[0]).write_text(json.dumps(measure(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
