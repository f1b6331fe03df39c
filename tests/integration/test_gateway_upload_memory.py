"""A 200 MB upload through a gateway process leaves its memory flat: the body is spooled to
disk by the multipart parser and copied to the store in 1 MiB pieces, never held whole."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import httpx
import orjson
import pytest

from llm_stream.network import free_port
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


def _batch_file(path: Path, size: int, huge_lines: Mapping[int, int] | None = None) -> None:
    """Valid chat lines of about 4 KB, up to ``size`` bytes; ``huge_lines`` maps a line's
    index to its size, for lines of many small messages (parsed, many times their size)."""
    with path.open("wb") as file:
        written, index = 0, 0
        while written < size - 8192:
            messages = [{"role": "user", "content": "x" * 4400}]
            if huge_lines and index in huge_lines:
                messages = [{"role": "user", "content": "hi"}] * (huge_lines[index] // 34)
            body = {"model": "m", "messages": messages}
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


def _gateway_env(isolated_settings: Settings) -> dict[str, str]:
    return {
        "bootstrap_servers": isolated_settings.bootstrap_servers,
        "batch_status_topic": isolated_settings.batch_status_topic,
        "batches_topic": isolated_settings.batches_topic,
        "requests_topic": isolated_settings.requests_topic,
        "results_topic": isolated_settings.results_topic,
        "dead_letter_topic": isolated_settings.dead_letter_topic,
        "output_dir": str(isolated_settings.output_dir),
    }


def _upload(base: str, path: Path) -> str:
    with path.open("rb") as file:
        response = httpx.post(
            f"{base}/v1/files",
            files={"file": (path.name, file)},
            data={"purpose": "batch"},
            timeout=300,
        )
    assert response.status_code == 200, response.text
    assert response.json()["bytes"] == path.stat().st_size
    file_id: str = response.json()["id"]
    return file_id


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_a_200_mb_upload_keeps_the_gateways_memory_flat(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "big.jsonl"
    _batch_file(path, FILE_BYTES)
    port = free_port()
    env = _gateway_env(isolated_settings)
    base = f"http://127.0.0.1:{port}"
    with running(["gateway", "--port", str(port)], env, tmp_path / "gateway.log") as process:
        _wait_healthy(base)
        before = _peak_rss(process.pid)
        started = time.monotonic()
        _upload(base, path)
        took = time.monotonic() - started
        after = _peak_rss(process.pid)
    growth = after - before
    print(
        f"upload of {path.stat().st_size / 2**20:.0f} MiB in {took:.1f} s: gateway peak RSS "
        f"{before / 2**20:.0f} -> {after / 2**20:.0f} MiB (+{growth / 2**20:.1f} MiB)"
    )
    assert growth < MAX_GROWTH_BYTES


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_validating_a_200_mb_file_with_huge_lines_keeps_the_gateways_memory_flat(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    """Lines of 50 and 20 MiB (parsed, about 700 MiB) are refused unread, each with its line's
    error; the rest of the file is validated line by line."""
    path = tmp_path / "huge-lines.jsonl"
    _batch_file(path, FILE_BYTES, huge_lines={100: 50 * 2**20, 5000: 20 * 2**20})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = _gateway_env(isolated_settings)
    with running(["gateway", "--port", str(port)], env, tmp_path / "gateway.log") as process:
        _wait_healthy(base)
        before = _peak_rss(process.pid)
        file_id = _upload(base, path)
        uploaded = _peak_rss(process.pid)
        request = {"input_file_id": file_id, "endpoint": "/v1/chat/completions"}
        response = httpx.post(
            f"{base}/v1/batches", json={**request, "completion_window": "24h"}, timeout=300
        )
        assert response.status_code == 200, response.text
        after = _peak_rss(process.pid)
    print(
        f"gateway peak RSS: {before / 2**20:.0f} MiB, {uploaded / 2**20:.0f} after the upload, "
        f"{after / 2**20:.0f} after validating {path.stat().st_size / 2**20:.0f} MiB"
    )
    assert after - before < MAX_GROWTH_BYTES
    batch = response.json()
    assert batch["status"] == "failed"
    errors = batch["errors"]["data"]
    assert [error["line"] for error in errors] == [101, 5001]
    assert all("batch_max_line_bytes" in error["message"] for error in errors)
