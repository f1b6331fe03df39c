"""A bench engine side with no engine, run as a child by the protocol tests: each run reports
its number in ``seconds``; a spec whose model is ``fail-warm-up`` dies while warming up."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from llm_stream.bench.children import SideInfo, child_main
from llm_stream.bench.support import EngineSpec, Run


class FakeSide:
    def __init__(self, spec: EngineSpec) -> None:
        self._tokens = len(spec["prompts"]) * spec["max_tokens"]
        self._runs = 0

    def describe(self) -> SideInfo:
        return SideInfo(device="fake", vllm_version="0", scheduler={"max_num_seqs": 2})

    def run_once(self) -> Run:
        self._runs += 1
        return Run(output_tokens=self._tokens, seconds=float(self._runs))


@contextmanager
def start(spec: EngineSpec) -> Iterator[FakeSide]:
    if spec["model"] == "fail-warm-up":
        print("the engine could not start", flush=True)
        raise SystemExit(3)
    print("engine logs go to stdout, as vLLM's do", flush=True)
    yield FakeSide(spec)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], start))
