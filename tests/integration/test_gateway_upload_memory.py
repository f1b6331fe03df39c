"""A 200 MB upload through a gateway process leaves its memory flat: the body is spooled to
disk by the multipart parser and copied to the store in 1 MiB pieces, never held whole."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import httpx
import orjson
import pytest

from llm_stream.cli.embedded_broker import free_port
from llm_stream.settings import Settings
from tests.processes import running

pytestmark = pytest.mark.broker

FILE_BYTES = 200 * 1024 * 1024 - 64 * 1024  # just under OpenAI's (and the default) limit
#: What the upload may add to the gateway's peak resident memory.
MAX_GROWTH_BYTES = 64 * 1024 * 1024


def _peak_rss(pid: int) -> int:
    """The process's high-water mark of resident memory (``VmHWM``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _batch_file(path: Path, size: int) -> None:
    """Valid chat lines of about 4 KB, up to ``size`` bytes."""
    with path.open("wb") as file:
        written, index = 0, 0
        while written < size - 8192:
            content = "x" * 4400
            body = {"model": "m", "messages": [{"role": "user", "content": content}]}
            line = {"custom_id": f"c{index}", "url": "/v1/chat/completions", "body": body}
            written += file.write(orjson.dumps(line) + b"\n")
            index += 1


def _wait_healthy(url: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                return
        except OSError:
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.2)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_a_200_mb_upload_keeps_the_gateways_memory_flat(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "big.jsonl"
    _batch_file(path, FILE_BYTES)
    port = free_port()
    env = {
        "bootstrap_servers": isolated_settings.bootstrap_servers,
        "batch_status_topic": isolated_settings.batch_status_topic,
        "batches_topic": isolated_settings.batches_topic,
        "requests_topic": isolated_settings.requests_topic,
        "results_topic": isolated_settings.results_topic,
        "dead_letter_topic": isolated_settings.dead_letter_topic,
        "output_dir": str(isolated_settings.output_dir),
    }
    base = f"http://127.0.0.1:{port}"
    with running(["gateway", "--port", str(port)], env, tmp_path / "gateway.log") as process:
        _wait_healthy(base)
        before = _peak_rss(process.pid)
        started = time.monotonic()
        with path.open("rb") as file:
            response = httpx.post(
                f"{base}/v1/files",
                files={"file": ("big.jsonl", file)},
                data={"purpose": "batch"},
                timeout=300,
            )
        took = time.monotonic() - started
        assert response.status_code == 200, response.text
        assert response.json()["bytes"] == path.stat().st_size
        after = _peak_rss(process.pid)
    growth = after - before
    print(
        f"upload of {path.stat().st_size / 2**20:.0f} MiB in {took:.1f} s: gateway peak RSS "
        f"{before / 2**20:.0f} -> {after / 2**20:.0f} MiB (+{growth / 2**20:.1f} MiB)"
    )
    assert growth < MAX_GROWTH_BYTES
