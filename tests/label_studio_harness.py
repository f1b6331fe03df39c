"""A real Label Studio server for the tests, on SQLite in a temporary directory, run from its
own virtual environment (``make label-studio`` builds ``.venv-label-studio``: its pins clash
with vLLM's). One user, signed in by a fixed token."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from llm_stream.network import free_port

REPO = Path(__file__).resolve().parents[1]
LABEL_STUDIO_BIN = REPO / ".venv-label-studio" / "bin" / "label-studio"
TOKEN = "f0e1d2c3b4a5968778695a4b3c2d1e0f12345678"
USER = "reviewer@example.com"
START_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class LabelStudioServer:
    url: str
    token: str
    version: str


@contextmanager
def label_studio_server(data_dir: Path) -> Iterator[LabelStudioServer]:
    if not LABEL_STUDIO_BIN.exists():
        raise RuntimeError(f"{LABEL_STUDIO_BIN} is missing: run `make label-studio`")
    port = free_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LATEST_VERSION_CHECK": "false",
        "DJANGO_DB": "sqlite",
    }
    env.pop("HOST", None)
    log = (data_dir / "server.log").open("wb")
    process = subprocess.Popen(
        [
            str(LABEL_STUDIO_BIN),
            "start",
            "--no-browser",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--username",
            USER,
            "--password",
            "reviewer-password-1",
            "--user-token",
            TOKEN,
            "--enable-legacy-api-token",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        version = _wait_ready(url, process, data_dir)
        yield LabelStudioServer(url=url, token=TOKEN, version=version)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes], data_dir: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (data_dir / "server.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"Label Studio exited with {process.returncode}:\n{log}")
        try:
            answer = httpx.get(
                f"{url}/api/current-user/whoami",
                headers={"Authorization": f"Token {TOKEN}"},
                timeout=5,
            )
            if answer.status_code == 200:
                return str(httpx.get(f"{url}/api/version", timeout=5).json()["release"])
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"Label Studio did not answer at {url} in {START_TIMEOUT_S} s")
