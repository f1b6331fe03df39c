"""Name the cause when vLLM's engine fails to start, in one line.

vLLM starts its engine core in a child process. When the child fails (out of memory, no
device), the parent only hears "Engine core initialization failed. See root cause above": the
cause is in the child's log, on the stderr it inherited. While the engine starts, this
process's stderr (file descriptor 2, which the children inherit) is a pipe whose reader copies
every byte to the real stderr and remembers the last lines, so a failed start can raise
``EngineStartError`` with the child's own exception line. The process's stderr is restored as
soon as the start ends; the children keep writing through the copier until they exit.
"""

from __future__ import annotations

import collections
import os
import re
import sys
import threading
from types import TracebackType

from llm_stream.errors import LlmStreamError

#: A traceback's last line, as the engine core logs it ("(EngineCore pid=1) ERROR ... [core.py:1]
#: ValueError: No available memory ...") or as multiprocessing prints it.
_EXCEPTION_LINE = re.compile(r"\b([A-Za-z_][\w.]*(?:Error|Exception)): (\S.*)$")


class EngineStartError(LlmStreamError, RuntimeError):
    """The engine did not start; the message is its cause as the engine core logged it."""


class EngineStartLog:
    """A context manager around the engine's start; ``cause()`` reads what the children said."""

    def __init__(self, keep_lines: int = 400) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=keep_lines)
        self._saved_stderr: int | None = None
        self._copier: threading.Thread | None = None

    def __enter__(self) -> EngineStartLog:
        sys.stderr.flush()
        read_end, write_end = os.pipe()
        self._saved_stderr = os.dup(2)
        os.dup2(write_end, 2)
        os.close(write_end)
        self._copier = threading.Thread(
            target=self._copy, args=(read_end, self._saved_stderr), daemon=True
        )
        self._copier.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        sys.stderr.flush()
        if self._saved_stderr is not None:
            os.dup2(self._saved_stderr, 2)  # the copier keeps its own descriptor of it
        if exc is not None and self._copier is not None:
            # The failed children are gone: let the copier pass on their last words first.
            self._copier.join(timeout=2.0)

    def _copy(self, source: int, target: int) -> None:
        partial = b""
        while chunk := _read(source):
            _write_all(target, chunk)
            try:
                *lines, partial = (partial + chunk).split(b"\n")
                self._lines.extend(line.decode(errors="replace") for line in lines)
                partial = partial[-4096:]
            except Exception:  # remembering must never stop the copying
                partial = b""
        os.close(source)
        os.close(target)

    def cause(self) -> str | None:
        """The last exception line the engine's processes wrote, if any."""
        for line in reversed(self._lines):
            if "Traceback" in line:
                continue
            match = _EXCEPTION_LINE.search(line)
            if match is not None:
                return f"{match.group(1)}: {match.group(2)}".strip()
        return None


def _read(source: int) -> bytes:
    try:
        return os.read(source, 65536)
    except OSError:
        return b""


def _write_all(target: int, data: bytes) -> None:
    while data:
        try:
            written = os.write(target, data)
        except OSError:
            return  # nowhere to copy to: the reading goes on, so writers never block
        data = data[written:]
