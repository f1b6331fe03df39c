"""The stream bench's measure of a child's memory."""

from __future__ import annotations

import subprocess
import sys

import pytest

from llm_stream.bench import stream as bench_stream


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_a_childs_peak_rss_is_its_own_not_its_parents() -> None:
    """Linux's ru_maxrss starts a child at its parent's RSS at fork; VmHWM does not."""
    ballast = b"\x01" * (300 << 20)  # 300 MB, every page written
    code = "from llm_stream.bench.stream import own_peak_rss_mb; print(own_peak_rss_mb())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 0 < float(done.stdout) < 250
    assert bench_stream.own_peak_rss_mb() > 300
    del ballast
