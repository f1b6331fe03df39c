"""``-i`` and ``-o`` of run-batch as http(s) URLs, as ``vllm run-batch`` takes them.

The input is downloaded to a local file before anything runs (streamed: a large file is never
whole in memory); the output is written locally, atomically, then uploaded with one PUT.
"""

from __future__ import annotations

from pathlib import Path

import httpx

_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def is_url(path_or_url: str) -> bool:
    return path_or_url.startswith(("http://", "https://"))


def download(url: str, target: Path) -> Path:
    """GET ``url`` into ``target``; raises ``httpx.HTTPError`` on failure."""
    with httpx.stream("GET", url, timeout=_TIMEOUT, follow_redirects=True) as response:
        response.raise_for_status()
        with target.open("wb") as file:
            for chunk in response.iter_bytes():
                file.write(chunk)
    return target


def upload(source: Path, url: str) -> None:
    """PUT the file at ``source`` to ``url``; raises ``httpx.HTTPError`` on failure."""
    headers = {"Content-Length": str(source.stat().st_size)}  # object stores refuse chunked
    with source.open("rb") as file:
        response = httpx.put(url, content=file, headers=headers, timeout=_TIMEOUT)
    response.raise_for_status()
