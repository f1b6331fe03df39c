"""Through the real engine: a media URL is answered with an error line and never fetched, and a
shell pointed at another cluster does not reach run-batch's private broker.

The tiny model is text-only (no multimodal model runs on these CPU machines), so vLLM would
refuse any media part itself; what this shows is that the refusal is the media rule's, made
before vLLM sees the line, and that nothing connects to the URL. The fetch itself is tested at
vLLM's media connector (tests/unit/engine/test_media_fetching.py).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.processes import SERVED_MODEL, TINY_ENGINE_FLAGS, service_env

pytestmark = [pytest.mark.engine, pytest.mark.broker]


class _CountingListener(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.connections = 0
        super().__init__(("127.0.0.1", 0), BaseHTTPRequestHandler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.connections += 1
        return False  # counted, then closed: nothing is served


@pytest.fixture
def listener() -> Iterator[_CountingListener]:
    server = _CountingListener()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _line(custom_id: str, content: Any) -> bytes:
    body = {
        "model": SERVED_MODEL,
        "max_tokens": 4,
        "messages": [{"role": "user", "content": content}],
    }
    return orjson.dumps({"custom_id": custom_id, "url": "/v1/chat/completions", "body": body})


def test_run_batch_answers_media_urls_without_fetching_and_ignores_the_shells_cluster(
    tiny_model: str, tmp_path: Path, listener: _CountingListener
) -> None:
    port = listener.server_address[1]
    image = {"type": "image_url", "image_url": {"url": f"http://127.0.0.1:{port}/cat.png"}}
    inline = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [_line("text", "hello"), _line("remote", [image]), _line("inline", [inline])]
    source.write_bytes(b"\n".join(lines) + b"\n")
    # A shell pointed at a production cluster: were it read, nothing would connect.
    production = {"bootstrap_servers": "127.0.0.1:1", "security_protocol": "SSL"}
    result = subprocess.run(
        [
            *(sys.executable, "-m", "llm_stream", "run-batch"),
            *("-i", str(source), "-o", str(target), "--model", tiny_model),
            *TINY_ENGINE_FLAGS,
        ],
        env=service_env(production),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    by_id = {
        line["custom_id"]: line for line in map(orjson.loads, target.read_bytes().splitlines())
    }
    assert by_id["text"]["response"]["status_code"] == 200
    remote = by_id["remote"]["error"]["error"]
    assert remote["code"] == 400
    assert "messages[0].content[0].image_url" in remote["message"]
    assert "fetching media URLs is turned off" in remote["message"]
    assert listener.connections == 0
    # An inline image passes the media rule and reaches vLLM, which refuses it for this model.
    assert "turned off" not in by_id["inline"]["error"]["error"]["message"]
