"""Engine sides of ``llm-stream bench`` as child processes that run one round when told.

Each side (``bench_offline``, ``bench_async``, ``bench_worker``) runs in its own process: vLLM
starts its engine core with ``spawn``, which needs a ``__main__`` guard. The parent starts every
side it measures, one at a time (each warms its engine up alone), then asks them for a round in
turn, so drift in the machine's speed during the bench falls on every side alike instead of on
whichever ran last. Only the side asked runs; the others wait idle on their stdin.

The protocol: ``python -m MODULE REPORT_FD``, the spec as one JSON line on stdin. The child
writes ``{"ready": SideInfo}`` to the report pipe once warm, then one ``{"run": Run}`` per
``run`` line on stdin, and closes its engine and exits at end of input. vLLM logs to stdout,
so reports travel on a pipe of their own.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import IO, Any, Protocol, TypedDict

from llm_stream.bench.support import (
    CHILD_TIMEOUT_S,
    BenchError,
    EngineSpec,
    Run,
    child_env,
    tail,
)

#: How long a child may take to exit once its input ends (its engine shuts down).
CLOSE_TIMEOUT_S = 120.0


class SideInfo(TypedDict):
    """What a side reports once ready: what it runs on."""

    device: str
    vllm_version: str
    #: Scheduler limits the engine uses (``max_num_seqs``, ...), by name.
    scheduler: dict[str, int]


class EngineSide(Protocol):
    """A started, warmed-up engine side in the child."""

    def describe(self) -> SideInfo: ...

    def run_once(self) -> Run:
        """One timed run over the spec's prompts."""
        ...


#: Starts a side from its spec (engine up, warm) and stops it on exit.
SideFactory = Callable[[EngineSpec], AbstractContextManager[EngineSide]]


def _report(stream: IO[str], message: dict[str, Any]) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


def child_main(argv: list[str], start: SideFactory) -> int:
    """An engine child's ``main``: spec on stdin, then a run per ``run`` line."""
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m MODULE REPORT_FD < spec-and-commands", file=sys.stderr)
        return 2
    with os.fdopen(int(argv[0]), "w") as report:
        spec: EngineSpec = json.loads(sys.stdin.readline())
        with start(spec) as side:
            _report(report, {"ready": side.describe()})
            for line in sys.stdin:
                if line.strip() != "run":
                    print(f"unknown command {line.strip()!r}", file=sys.stderr)
                    return 2
                _report(report, {"run": side.run_once()})
    return 0


class EngineChild:
    """The parent's handle on one side's child process."""

    def __init__(self, module: str, spec: EngineSpec, workdir: Path, side: str) -> None:
        self.side = side
        self._info: SideInfo | None = None
        self._log_path = workdir / f"{module.rsplit('.', 1)[-1]}.log"
        read_end, write_end = os.pipe()
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", module, str(write_end)],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(),
                pass_fds=(write_end,),
            )
        os.close(write_end)
        self._reports = os.fdopen(read_end, "r")
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._reports, selectors.EVENT_READ)
        self._send(json.dumps(spec))

    def wait_ready(self) -> None:
        """Block until the child's engine is up and warm."""
        self._info = self._receive("ready")

    @property
    def info(self) -> SideInfo:
        """What the side runs on, as it reported when ready."""
        if self._info is None:
            raise BenchError(f"{self.side} is not ready")
        return self._info

    def _send(self, line: str) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        try:
            stdin.write(line.encode() + b"\n")
            stdin.flush()
        except BrokenPipeError as error:
            raise self._failed("exited") from error

    def _receive(self, kind: str) -> Any:
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while not self._selector.select(timeout=max(0.0, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                raise self._failed("timed out")
        line = self._reports.readline()
        if not line:
            raise self._failed(f"exited with {self._process.wait()}")
        message: dict[str, Any] = json.loads(line)
        return message[kind]

    def _failed(self, what: str) -> BenchError:
        return BenchError(f"{self.side} {what}:\n{tail(self._log_path)}")

    def run(self) -> Run:
        """One timed run of this side (the others wait meanwhile)."""
        self._send("run")
        result: Run = self._receive("run")
        return result

    def close(self) -> None:
        """End its input and wait for its engine to stop; kill it if it does not."""
        if self._process.stdin is not None and not self._process.stdin.closed:
            with suppress(BrokenPipeError):
                self._process.stdin.close()
        try:
            self._process.wait(timeout=CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._selector.close()
        self._reports.close()


@contextmanager
def engine_child(module: str, spec: EngineSpec, workdir: Path, side: str) -> Iterator[EngineChild]:
    """A side's child, started and warmed up, stopped at the end of the block."""
    child = EngineChild(module, spec, workdir, side)
    try:
        child.wait_ready()
        yield child
    finally:
        child.close()
