"""A 100,000-line batch exports in bounded memory: the export's peak resident memory, in a
process of its own, grows by no more than a bound over a 1,000-line batch's (the requests and
judgements wait on disk; lines and Parquet row groups are streamed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from llm_stream.files.store import LocalFileStore
from tests.curation_support import write_batch

REPO = Path(__file__).resolve().parents[3]
SMALL, LARGE = 1_000, 100_000
#: What 99,000 more lines may add to the export's peak resident memory.
MAX_GROWTH_BYTES = 32 * 1024 * 1024


def _export(store: Path, batch_id: str, fmt: str, out: Path, lines: int) -> dict[str, int]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.measure_export_memory",
            str(store),
            batch_id,
            fmt,
            str(out),
            str(lines),
        ],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=600,
    )
    report: dict[str, int] = orjson.loads(done.stdout.splitlines()[-1])
    print(fmt, lines, report)
    return report


@pytest.mark.parametrize("fmt", ["finetune", "parquet"])
def test_a_100000_line_export_stays_within_bounded_memory(tmp_path: Path, fmt: str) -> None:
    store_dir = tmp_path / "store"
    store = LocalFileStore(store_dir)
    write_batch(store, "batch_small", SMALL)
    write_batch(store, "batch_large", LARGE)
    small = _export(store_dir, "batch_small", fmt, tmp_path / "small.out", SMALL)
    large = _export(store_dir, "batch_large", fmt, tmp_path / "large.out", LARGE)
    assert (small["written"], large["written"]) == (SMALL, LARGE)
    input_bytes = (store_dir / "batch_large" / "output.jsonl").stat().st_size
    assert input_bytes > 30 * 1024 * 1024  # the answers alone are larger than the bound
    assert large["peak_rss"] - small["peak_rss"] < MAX_GROWTH_BYTES
