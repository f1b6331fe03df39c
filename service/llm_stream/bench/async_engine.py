"""vLLM's ``AsyncLLM`` with every request submitted at once: the engine the worker drives, bare.

A child process like ``bench_offline`` (its event loop lives on between runs), with the same
engine flags and the scheduler limits of vLLM's ``LLM`` class, as the worker asks for. Its gap
to ``LLM.generate`` is vLLM's own cost of the asynchronous client (its output handler shares
the CPU with the engine core); the worker's gap to it is ours. Prompts are rendered by the
engine's renderer inside the timed window, as ``LLM.generate`` tokenises inside its own.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llm_stream.bench.children import SideInfo, child_main
from llm_stream.bench.offline import scheduler_limits, side_info
from llm_stream.bench.support import EngineSpec, Run, engine_args


async def _generate(engine: Any, prompts: list[str], params: Any, tag: str) -> int:
    """Output tokens of ``prompts``, all submitted at once, each answered once (FINAL_ONLY)."""
    inputs = await engine.renderer.render_cmpl_async([{"prompt": p} for p in prompts])

    async def one(index: int, engine_input: Any) -> int:
        tokens = 0
        async for output in engine.generate(engine_input, params, f"{tag}-{index}"):
            tokens = sum(len(c.token_ids) for c in output.outputs)
        return tokens

    counts = await asyncio.gather(*(one(i, x) for i, x in enumerate(inputs)))
    return sum(counts)


class AsyncSide:
    """``AsyncLLM``, every prompt submitted at once per run, on a loop kept between runs."""

    def __init__(self, runner: asyncio.Runner, engine: Any, config: Any, spec: EngineSpec) -> None:
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        self._runner, self._engine, self._config = runner, engine, config
        self._prompts = spec["prompts"]
        self._params = SamplingParams(
            temperature=0,
            max_tokens=spec["max_tokens"],
            ignore_eos=True,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )
        self._runs = 0
        runner.run(_generate(engine, spec["warmup_prompts"], self._params, "warmup"))

    def describe(self) -> SideInfo:
        return side_info(scheduler_limits(self._config.scheduler_config))

    def run_once(self) -> Run:
        self._runs += 1
        started = time.perf_counter()
        work = _generate(self._engine, self._prompts, self._params, f"run{self._runs}")
        tokens = self._runner.run(work)
        return Run(output_tokens=tokens, seconds=time.perf_counter() - started)


@contextmanager
def start(spec: EngineSpec) -> Iterator[AsyncSide]:
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.async_llm import AsyncLLM

    args = engine_args(AsyncEngineArgs, spec["model"], spec["engine_flags"])
    usage = UsageContext.LLM_CLASS  # the worker's choice: the offline class's scheduler limits
    config = args.create_engine_config(usage_context=usage)
    with asyncio.Runner() as runner:

        async def started() -> Any:  # AsyncLLM binds itself to the running loop
            return AsyncLLM.from_vllm_config(
                config, usage_context=usage, disable_log_stats=args.disable_log_stats
            )

        engine = runner.run(started())
        try:
            yield AsyncSide(runner, engine, config, spec)
        finally:
            engine.shutdown()


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], start))
