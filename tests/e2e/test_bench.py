"""CI's smoke of ``llm-stream bench``: every part runs on the tiny model and reports its figure.

No timing is asserted (a smoke run's figures mean nothing): each figure must be there and
positive, so a part that breaks, or stops reporting, fails here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.processes import service_env

pytestmark = [pytest.mark.engine, pytest.mark.broker]

FIGURES = (
    "offline_tok_s",
    "async_tok_s",
    "stream_tok_s",
    "stream_vs_offline",
    "run_batch_s",
    "vllm_run_batch_s",
    "run_batch_vs_vllm",
    "aggregator_lines_s",
    "overhead_us_per_msg",
    "rss_1k_mb",
    "rss_100k_mb",
)


def test_bench_smoke_reports_every_figure(
    tiny_model: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    figures_path = tmp_path / "bench.json"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "llm_stream", "bench", "--smoke"),
            *("--model", tiny_model, "--bootstrap-servers", kafka_bootstrap),
            *("--json", str(figures_path)),
        ],
        env=service_env({}),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "SMOKE RUN" in done.stdout
    figures = orjson.loads(figures_path.read_bytes())
    assert figures["smoke"] is True
    missing = [key for key in FIGURES if key not in figures]
    assert not missing, figures
    assert all(figures[key] > 0 for key in FIGURES), figures
    assert set(figures["targets"]) <= set(FIGURES) | {"rss_100k_vs_1k"}
