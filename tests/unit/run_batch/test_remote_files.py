"""run-batch's ``-i``/``-o`` as http URLs, against an HTTP server on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from llm_stream.run_batch.remote_files import download, is_url, upload

STORED: dict[str, bytes] = {}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = STORED.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write(body or b"")

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        STORED[self.path] = self.rfile.read(length)
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def test_input_is_downloaded_and_output_uploaded(server: str, tmp_path: Path) -> None:
    STORED["/in.jsonl"] = b'{"custom_id": "a"}\n' * 1000
    local = download(f"{server}/in.jsonl", tmp_path / "in.jsonl")
    assert local.read_bytes() == STORED["/in.jsonl"]
    (tmp_path / "out.jsonl").write_bytes(b"line\n" * 500)
    upload(tmp_path / "out.jsonl", f"{server}/out.jsonl")
    assert STORED["/out.jsonl"] == b"line\n" * 500


def test_a_missing_input_is_an_error_not_an_empty_file(server: str, tmp_path: Path) -> None:
    with pytest.raises(httpx.HTTPStatusError):
        download(f"{server}/missing.jsonl", tmp_path / "x.jsonl")


def test_only_http_and_https_are_urls() -> None:
    assert is_url("https://example.test/a.jsonl")
    assert is_url("http://127.0.0.1/a")
    assert not is_url("/tmp/a.jsonl")
    assert not is_url("s3://bucket/a")
