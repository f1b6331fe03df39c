"""A failed engine start names the engine core's own exception, read from the stderr its
processes inherited, while every byte still reaches the real stderr."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from llm_stream.cli import exit_codes
from llm_stream.cli.errors import classify
from llm_stream.engine.start_log import EngineStartError, EngineStartLog

#: The end of what vLLM 0.32's engine core logs when its KV cache does not fit.
ENGINE_CORE_LOG = """\
(EngineCore pid=7) ERROR 11-23 16:30:07 [core.py:1510] EngineCore failed to start.
(EngineCore pid=7) ERROR 11-23 16:30:07 [core.py:1510] Traceback (most recent call last):
(EngineCore pid=7) ERROR 11-23 16:30:07 [core.py:1510]     raise ValueError(
(EngineCore pid=7) ERROR 11-23 16:30:07 [core.py:1510] ValueError: No available memory for \
the cache blocks. Try increasing `gpu_memory_utilization`
(EngineCore pid=7) ERROR 11-23 16:30:10 [multiproc_executor.py:315] Worker proc died
"""


def _child_writing(text: str, after_s: float = 0.0) -> subprocess.Popen[bytes]:
    """A child process that inherits this process's stderr, as vLLM's engine core does."""
    code = f"import sys, time; time.sleep({after_s}); sys.stderr.write({text!r})"
    return subprocess.Popen([sys.executable, "-c", code])


def test_the_cause_is_read_while_everything_reaches_stderr(
    capfd: pytest.CaptureFixture[str],
) -> None:
    start_log = EngineStartLog()

    def failed_start() -> None:
        with start_log:
            _child_writing(ENGINE_CORE_LOG).wait()
            raise RuntimeError("Engine core initialization failed. See root cause above.")

    with pytest.raises(RuntimeError, match="root cause above"):
        failed_start()
    assert start_log.cause() == (
        "ValueError: No available memory for the cache blocks. Try increasing "
        "`gpu_memory_utilization`"
    )
    assert capfd.readouterr().err == ENGINE_CORE_LOG


def test_children_outliving_the_start_still_write_to_stderr(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with EngineStartLog() as start_log:
        child = _child_writing("engine core: still serving\n", after_s=0.3)
    print("the parent's own line", file=sys.stderr, flush=True)
    child.wait()
    deadline = time.monotonic() + 5
    err = ""
    while "still serving" not in err and time.monotonic() < deadline:
        time.sleep(0.05)
        err += capfd.readouterr().err
    assert "the parent's own line" in err
    assert "engine core: still serving" in err
    assert start_log.cause() is None


def test_an_engine_start_error_is_classified_by_its_cause() -> None:
    failure = classify(EngineStartError("ValueError: No available memory for the cache blocks."))
    assert failure.code == exit_codes.EXIT_ENGINE_START
    assert "No available memory for the cache blocks" in failure.message
    assert "--max-model-len" in failure.message
    other = classify(EngineStartError("ImportError: libcuda.so.1: cannot open shared object"))
    assert other.code == exit_codes.EXIT_ENGINE_START
    assert other.message.startswith("the vLLM engine failed to start: ImportError: libcuda")
