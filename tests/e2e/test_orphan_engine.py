"""A SIGKILLed worker leaves no vLLM engine core behind, so the next worker on the host starts."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from llm_stream.network import free_port
from llm_stream.ops.orphan_guard import GRACE_S
from tests.processes import running, worker_args

pytestmark = [pytest.mark.engine, pytest.mark.broker]

START_WITHIN_S = 120


def _eventually(condition: Callable[[], bool], within: float, every: float = 0.25) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


def _answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _is_engine_core(process: psutil.Process) -> bool:
    try:
        return "EngineCore" in " ".join([process.name(), *process.cmdline()])
    except psutil.Error:
        return False


def _running(process: psutil.Process) -> bool:
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def test_sigkilled_worker_leaves_no_engine_core_and_the_next_worker_starts(
    kafka_bootstrap: str, unique_name: str, tiny_model: str, tmp_path: Path
) -> None:
    settings = {
        "bootstrap_servers": kafka_bootstrap,
        "requests_topic": f"{unique_name}.requests",
        "results_topic": f"{unique_name}.results",
        "dead_letter_topic": f"{unique_name}.dead-letter",
        "worker_group_id": f"{unique_name}.workers",
        "ops_host": "127.0.0.1",
        "ops_port": str(free_port()),
    }
    first_log = tmp_path / "first.log"
    with running(worker_args(tiny_model), settings, first_log) as first:
        # The operations endpoint opens once the engine is up.
        healthz = f"http://127.0.0.1:{settings['ops_port']}/healthz"
        assert _eventually(lambda: _answers_200(healthz), START_WITHIN_S), first_log.read_text()
        tree = psutil.Process(first.pid).children(recursive=True)
        assert any(_is_engine_core(p) for p in tree), [p.cmdline() for p in tree]
        names = [(p.pid, p.name()) for p in tree]
        first.kill()
        first.wait()
        killed_at = time.monotonic()
        ended = _eventually(lambda: not any(_running(p) for p in tree), GRACE_S + 5, every=0.1)
        assert ended, names
        cleaned_in = time.monotonic() - killed_at
        print(f"worker's tree {names} gone {cleaned_in:.2f} s after its SIGKILL")
    assert "orphan guard: owner" in first_log.read_text()

    second = {**settings, "ops_port": str(free_port())}
    second_log = tmp_path / "second.log"
    with running(worker_args(tiny_model), second, second_log) as process:
        readyz = f"http://127.0.0.1:{second['ops_port']}/readyz"
        assert _eventually(lambda: _answers_200(readyz), START_WITHIN_S), second_log.read_text()
        tree = psutil.Process(process.pid).children(recursive=True)
        assert any(_is_engine_core(p) for p in tree)
    # A normal shutdown stops the engine itself: the released guard kills nothing.
    assert process.returncode == 0, second_log.read_text()[-3000:]
    assert _eventually(lambda: not any(_running(p) for p in tree), 5)
    assert "orphan guard" not in second_log.read_text()
