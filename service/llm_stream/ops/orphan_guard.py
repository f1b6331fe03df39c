"""A watchdog process that ends our child process trees when we die by SIGKILL.

vLLM's engine core (``VLLM::EngineCore`` and its ``VLLM::Worker`` children) and the embedded
broker's Tansu do not watch the process that started them: a SIGKILLed worker or
``llm-stream broker`` would leave them running with their memory (on a GPU, device memory) and
the next worker on the host could not start its engine. Nothing runs in a SIGKILLed process, so
the cleanup must live elsewhere: a tiny Python process, started beside the children, that waits
for its parent to disappear (a pidfd wakes it at once; without one it checks ``getppid`` twice a
second), then sends SIGTERM to the guarded trees, SIGKILL to what is left after a grace period,
and exits. Between events it sleeps; every few seconds it reads /proc (about 1 ms) to learn
descendants the guarded processes started since.

The owner talks to it over its stdin: ``seal`` after it has spawned what it wants guarded (the
guard adopts the owner's new children until then, so an engine SIGKILLed while still starting
is covered too), ``release`` on a normal shutdown (the guard exits and kills nothing: the owner
has already stopped its children itself). The guard also exits by itself once every guarded
process is gone. It runs in its own session so that a terminal's Ctrl-C, which the owner answers
by draining, does not end the guard first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence

import psutil

#: Seconds between the guard's scans for new descendants (a scan reads /proc: about 1 ms).
SCAN_INTERVAL_S = 2.0
#: The same while it adopts the owner's new children: a child started less than this before
#: the owner dies is missed.
ADOPT_SCAN_INTERVAL_S = 0.5
#: Seconds the guarded processes get between SIGTERM and SIGKILL: vLLM's engine core needs
#: about 5 s on 2 CPU cores to stop its workers and tear down after a SIGTERM.
GRACE_S = 10.0

_SEAL = b"s"
_RELEASE = b"r"


class OrphanGuard:
    """Owner's handle on a watchdog process; see the module docstring."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process: subprocess.Popen[bytes] | None = process

    @classmethod
    def start(
        cls, pids: Iterable[int] = (), *, adopt_children: bool = False, grace: float = GRACE_S
    ) -> OrphanGuard:
        """Guard ``pids`` (and their descendants); with ``adopt_children`` also every child
        this process starts from now until ``seal()``."""
        command = [sys.executable, "-I", os.path.abspath(__file__), "--grace", str(grace)]
        if adopt_children:
            # Children this process already has are not ours to kill; listed here, not read by
            # the guard, so that none started while the guard boots is mistaken for one.
            existing = [str(child.pid) for child in psutil.Process().children()]
            command += ["--adopt-except", ",".join(existing)]
        command += [str(os.getpid()), *(str(pid) for pid in pids)]
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True
        )
        return cls(process)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def seal(self) -> None:
        """Adopt the children started so far, and no more."""
        self._send(_SEAL)

    def release(self, timeout: float = 5.0) -> None:
        """Normal shutdown: the guard exits without killing anything. Idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        self._write(process, _RELEASE)
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _send(self, command: bytes) -> None:
        if self._process is not None:
            self._write(self._process, command)

    @staticmethod
    def _write(process: subprocess.Popen[bytes], command: bytes) -> None:
        if process.stdin is None:
            return
        # The guard may already have exited because everything it guarded is gone.
        with contextlib.suppress(OSError):
            process.stdin.write(command)
            process.stdin.flush()


# ---- the watchdog process -------------------------------------------------------------------


def _open_pidfd(pid: int) -> int | None:
    """A pidfd that becomes readable when ``pid`` exits; None where the kernel has none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _running(process: psutil.Process) -> bool:
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _name(process: psutil.Process) -> str:
    try:
        return str(process.name())
    except psutil.Error:
        return "?"


class _Watch:
    def __init__(self, parent: int, roots: Sequence[int], ignored: Iterable[int] | None) -> None:
        self.parent = parent
        self.adopt = ignored is not None
        self.ignored = {os.getpid(), *(ignored or ())}
        self.guarded: dict[int, psutil.Process] = {}
        self.track(roots)

    def parent_gone(self) -> bool:
        return os.getppid() != self.parent

    def track(self, pids: Iterable[int]) -> None:
        for pid in pids:
            if pid not in self.guarded and (process := _process(pid)) is not None:
                self.guarded[pid] = process

    def scan(self) -> None:
        """Adopt the owner's new children and record every descendant of the guarded."""
        if self.adopt and (owner := _process(self.parent)) is not None:
            with contextlib.suppress(psutil.Error):
                self.track(c.pid for c in owner.children() if c.pid not in self.ignored)
        for process in list(self.guarded.values()):
            with contextlib.suppress(psutil.Error):
                self.track(child.pid for child in process.children(recursive=True))

    def alive(self) -> list[psutil.Process]:
        return [process for process in self.guarded.values() if _running(process)]

    def end_all(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace``. A multiprocessing resource tracker ignores
        SIGTERM and exits once the processes it tracks are gone, unlinking the shared memory
        they leaked: it is killed last, and only if it outlives them by ``grace``."""
        self.scan()
        victims = self.alive()
        if not victims:
            return
        _say(f"owner {self.parent} died; ending {_names(victims)}")
        trackers = [p for p in victims if _is_resource_tracker(p)]
        others = [p for p in victims if p not in trackers]
        for process in others:
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _kill(_wait_gone(others, grace), grace)
        _kill(_wait_gone(trackers, grace), grace)


def _say(message: str) -> None:
    with contextlib.suppress(OSError):
        print(f"orphan guard: {message}", file=sys.stderr, flush=True)


def _names(processes: Iterable[psutil.Process]) -> str:
    return ", ".join(f"{p.pid} ({_name(p)})" for p in processes)


def _is_resource_tracker(process: psutil.Process) -> bool:
    try:
        return "multiprocessing.resource_tracker" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def _kill(processes: list[psutil.Process], grace: float) -> None:
    if not processes:
        return
    _say(f"{_names(processes)} still running after {grace} s: SIGKILL")
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
    _wait_gone(processes, grace)


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The ones still running after ``timeout``; unlike ``psutil.wait_procs`` a zombie counts
    as gone (they are no longer our children: whoever adopted them reaps them, or not)."""
    deadline = time.monotonic() + timeout
    while (left := [p for p in processes if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def watch(parent: int, roots: Sequence[int], ignored: Iterable[int] | None, grace: float) -> int:
    """The watchdog's main loop; ``ignored`` is None unless it adopts the owner's children."""
    state = _Watch(parent, roots, ignored)
    pidfd = _open_pidfd(parent)
    stdin: int | None = sys.stdin.fileno()
    next_scan = 0.0
    while True:
        now = time.monotonic()
        if now >= next_scan:
            state.scan()
            if not state.adopt and not state.alive():
                return 0  # nothing left to guard: the owner stopped its children itself
            next_scan = now + (ADOPT_SCAN_INTERVAL_S if state.adopt else SCAN_INTERVAL_S)
        waits = [fd for fd in (stdin, pidfd) if fd is not None]
        # Without a pidfd, getppid() (a cheap syscall) tells twice a second.
        timeout = next_scan - now if pidfd is not None else min(0.5, next_scan - now)
        readable, _, _ = select.select(waits, [], [], max(0.0, timeout))
        if (pidfd is not None and pidfd in readable) or state.parent_gone():
            state.end_all(grace)
            return 0
        if stdin is not None and stdin in readable:
            data = os.read(stdin, 64)
            if not data:
                stdin = None  # the owner closed the pipe; its death still shows in the pidfd
            if _RELEASE in data:
                return 0
            if _SEAL in data:
                state.scan()
                state.adopt = False
                next_scan = time.monotonic() + SCAN_INTERVAL_S


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="orphan_guard")
    parser.add_argument("parent", type=int, help="the owner; its death ends the guarded")
    parser.add_argument("pids", type=int, nargs="*", help="processes to guard, with descendants")
    parser.add_argument("--grace", type=float, default=GRACE_S)
    parser.add_argument(
        "--adopt-except", metavar="PIDS", help="also guard the owner's new children, not these"
    )
    args = parser.parse_args(argv)
    ignored = None
    if args.adopt_except is not None:
        ignored = [int(pid) for pid in args.adopt_except.split(",") if pid]
    return watch(args.parent, args.pids, ignored, args.grace)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
