"""The orphan guard ends a SIGKILLed owner's process trees, and only then."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psutil
import pytest

# The owner: starts `sh` with a `sleep` grandchild, guards it, prints the pids, then obeys stdin.
OWNER = """
import subprocess, sys, time
from llm_stream.ops.orphan_guard import OrphanGuard

tree = ["sh", "-c", "sleep 300 & wait"]
if sys.argv[1] == "adopt":
    guard = OrphanGuard.start(adopt_children=True, grace=1)
    child = subprocess.Popen(tree)
    guard.seal()
else:
    child = subprocess.Popen(tree)
    guard = OrphanGuard.start([child.pid], grace=1)
print(child.pid, guard.pid, flush=True)
for line in sys.stdin:
    if line.strip() == "release":
        guard.release()
        print("released", flush=True)
    elif line.strip() == "end-tree":
        child.terminate()
        child.wait()
        print("ended", flush=True)
time.sleep(300)
"""


@dataclass
class Owner:
    process: subprocess.Popen[str]
    tree: list[psutil.Process]  # sh and its sleep
    guard: psutil.Process

    def tell(self, command: str) -> str:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()


def _eventually(condition: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@contextlib.contextmanager
def _owner(mode: str) -> Iterator[Owner]:
    process = subprocess.Popen(
        [sys.executable, "-c", OWNER, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    leftovers: list[psutil.Process] = []
    try:
        assert process.stdout is not None
        child_pid, guard_pid = (int(pid) for pid in process.stdout.readline().split())
        child = psutil.Process(child_pid)
        assert _eventually(lambda: bool(child.children()), 5), "sh did not start its sleep"
        tree = [child, *child.children()]
        guard = psutil.Process(guard_pid)
        leftovers = [*tree, guard]
        yield Owner(process, tree, guard)
    finally:
        process.kill()
        process.wait()
        for leftover in leftovers:
            with contextlib.suppress(psutil.Error):
                leftover.kill()


@pytest.mark.parametrize("mode", ["explicit", "adopt"])
def test_sigkilled_owner_takes_its_guarded_tree_along(mode: str) -> None:
    with _owner(mode) as owner:
        time.sleep(0.5)  # let the guard boot and scan
        os.kill(owner.process.pid, signal.SIGKILL)
        assert _eventually(lambda: all(_gone(p) for p in owner.tree), 5), owner.tree
        assert _eventually(lambda: _gone(owner.guard), 5), "the guard did not exit"


def test_guard_leaves_the_tree_alone_while_the_owner_lives() -> None:
    with _owner("explicit") as owner:
        time.sleep(1.0)
        assert not any(_gone(p) for p in owner.tree)
        assert not _gone(owner.guard)


def test_released_guard_exits_and_kills_nothing_when_the_owner_dies() -> None:
    with _owner("adopt") as owner:
        assert owner.tell("release") == "released"
        assert _gone(owner.guard)
        os.kill(owner.process.pid, signal.SIGKILL)
        time.sleep(0.5)
        assert not any(_gone(p) for p in owner.tree)


def test_guard_exits_by_itself_once_the_guarded_are_gone() -> None:
    with _owner("explicit") as owner:
        for process in reversed(owner.tree):
            process.terminate()
        assert owner.tell("end-tree") == "ended"
        assert _eventually(lambda: _gone(owner.guard), 5)
        assert owner.process.poll() is None
