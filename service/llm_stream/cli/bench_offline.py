"""The ceiling of ``llm-stream bench``: vLLM's own offline ``LLM.generate`` on the bench's prompts.

A child process (``python -m llm_stream.cli.bench_offline RESULT_PATH``, spec on stdin; see
``bench_support``). The engine starts once and warms up on other prompts; then each of the
``repeat`` runs times one ``generate`` call on all the prompts, so start-up is never counted.
The result carries the scheduler limits vLLM chose for its ``LLM`` class: the worker asks for
the same ones.
"""

from __future__ import annotations

import os
import sys
import time

from llm_stream.cli.bench_support import EngineResult, EngineSpec, Run, child_main, engine_args


def describe_device() -> str:
    """``cuda: <name>`` where torch sees a GPU, else ``cpu (<n> cores)``."""
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu ({os.cpu_count()} cores)"


def measure(spec: EngineSpec) -> EngineResult:
    import vllm
    from vllm import LLM, SamplingParams
    from vllm.engine.arg_utils import EngineArgs

    llm = LLM.from_engine_args(engine_args(EngineArgs, spec["model"], spec["engine_flags"]))
    try:
        params = SamplingParams(temperature=0, max_tokens=spec["max_tokens"], ignore_eos=True)
        llm.generate(spec["warmup_prompts"], params, use_tqdm=False)
        runs: list[Run] = []
        for _ in range(spec["repeat"]):
            started = time.perf_counter()
            outputs = llm.generate(spec["prompts"], params, use_tqdm=False)
            seconds = time.perf_counter() - started
            tokens = sum(len(c.token_ids) for out in outputs for c in out.outputs)
            runs.append(Run(output_tokens=tokens, seconds=seconds))
        scheduler = llm.llm_engine.vllm_config.scheduler_config
        return EngineResult(
            runs=runs,
            device=describe_device(),
            vllm_version=str(vllm.__version__),
            scheduler={
                "max_num_seqs": int(scheduler.max_num_seqs),
                "max_num_batched_tokens": int(scheduler.max_num_batched_tokens),
            },
        )
    finally:
        llm.llm_engine.engine_core.shutdown()


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], measure))
