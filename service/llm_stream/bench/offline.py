"""The ceiling of ``llm-stream bench``: vLLM's own offline ``LLM.generate`` on the bench's prompts.

A child process (see ``bench_children``). The engine starts once and warms up on other prompts;
then each run the parent asks for times one ``generate`` call on all the prompts, so start-up is
never counted. Its report carries the scheduler limits vLLM chose for its ``LLM`` class: the
worker asks for the same ones.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llm_stream.bench.children import SideInfo, child_main
from llm_stream.bench.support import EngineSpec, Run, engine_args


def describe_device() -> str:
    """``cuda: <name>`` where torch sees a GPU, else ``cpu (<n> cores)``."""
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu ({os.cpu_count()} cores)"


def side_info(scheduler: dict[str, int]) -> SideInfo:
    """What a side reports once ready: this machine, this vLLM and its ``scheduler`` limits."""
    import vllm

    return SideInfo(
        device=describe_device(), vllm_version=str(vllm.__version__), scheduler=scheduler
    )


def scheduler_limits(scheduler_config: Any) -> dict[str, int]:
    """The limits vLLM chose for an engine (those of its ``LLM`` class, for every side here)."""
    return {
        "max_num_seqs": int(scheduler_config.max_num_seqs),
        "max_num_batched_tokens": int(scheduler_config.max_num_batched_tokens),
    }


class OfflineSide:
    """``LLM.generate`` on every prompt in one call per run."""

    def __init__(self, llm: Any, spec: EngineSpec) -> None:
        from vllm import SamplingParams

        self._llm, self._prompts = llm, spec["prompts"]
        self._params = SamplingParams(temperature=0, max_tokens=spec["max_tokens"], ignore_eos=True)
        llm.generate(spec["warmup_prompts"], self._params, use_tqdm=False)

    def describe(self) -> SideInfo:
        return side_info(scheduler_limits(self._llm.llm_engine.vllm_config.scheduler_config))

    def run_once(self) -> Run:
        started = time.perf_counter()
        outputs = self._llm.generate(self._prompts, self._params, use_tqdm=False)
        seconds = time.perf_counter() - started
        tokens = sum(len(c.token_ids) for out in outputs for c in out.outputs)
        return Run(output_tokens=tokens, seconds=seconds)


@contextmanager
def start(spec: EngineSpec) -> Iterator[OfflineSide]:
    from vllm import LLM
    from vllm.engine.arg_utils import EngineArgs

    llm = LLM.from_engine_args(engine_args(EngineArgs, spec["model"], spec["engine_flags"]))
    try:
        yield OfflineSide(llm, spec)
    finally:
        llm.llm_engine.engine_core.shutdown()


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], start))
