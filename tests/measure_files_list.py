"""Measure ``GET /v1/files`` over a short and a long history of finished batches: latency of a
page and the gateway process's memory, each history served by a fresh process.

    PYTHONPATH=service python -m tests.measure_files_list [--batches 100 100000] [--s3]

History is written through the store as the aggregator writes it (output and error files,
then the batch object), one batch every 30 seconds of ``created_at`` (fsync skipped while
writing it: the layout is the same). Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from llm_stream.files.store import BatchFile, FileStore, LocalFileStore

START = 1_700_000_000
SPACING_S = 30
PAGES = ({"limit": 20}, {"limit": 100}, {"limit": 20, "order": "asc"})


def _write_history(store: FileStore, batches: int, set_time: Any) -> None:
    os.fsync = lambda _descriptor: None  # this process only: the layout does not change
    for index in range(batches):
        batch_id = f"batch_{index:07d}"
        ids = [
            store.write(batch_id, kind, [b"{}\n"]) for kind in (BatchFile.OUTPUT, BatchFile.ERROR)
        ]
        for named in ids:
            set_time(store, named, START + index * SPACING_S)
        marker = {"output_file_id": ids[0], "error_file_id": ids[1]}
        store.write(batch_id, BatchFile.BATCH, [json.dumps(marker).encode()])


def _set_local_time(store: FileStore, named: str, when: int) -> None:
    assert isinstance(store, LocalFileStore)
    os.utime(store.path_of(named), (when, when))


def _serve_and_measure(root: str, rounds: int) -> dict[str, Any]:
    """In a fresh process: a gateway on the store, its pages timed, its memory read."""
    from fastapi.testclient import TestClient

    from llm_stream.gateway.app import create_app
    from llm_stream.settings import Settings
    from tests.gateway_support import FakeBatchStream

    store = LocalFileStore(Path(root))
    app = create_app(Settings(output_dir=Path(root)), store=store, stream=FakeBatchStream())
    figures: dict[str, Any] = {}
    with TestClient(app) as client:
        for params in PAGES:
            times = []
            for _ in range(rounds):
                began = time.perf_counter()
                response = client.get("/v1/files", params=params)
                times.append(time.perf_counter() - began)
                assert response.status_code == 200
                assert response.json()["has_more"]
            figures[json.dumps(params)] = statistics.median(times) * 1000
    status = Path("/proc/self/status").read_text()
    rss = next(line for line in status.splitlines() if line.startswith("VmHWM"))
    figures["peak_rss_mib"] = int(rss.split()[1]) / 1024
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=[100, 100_000])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        print(json.dumps(_serve_and_measure(arguments.serve, arguments.rounds)))
        return
    for batches in arguments.batches:
        with tempfile.TemporaryDirectory(prefix="files-list-") as root:
            began = time.perf_counter()
            _write_history(LocalFileStore(Path(root)), batches, _set_local_time)
            written = time.perf_counter() - began
            command = [sys.executable, "-m", "tests.measure_files_list", "--serve", root]
            command += ["--rounds", str(arguments.rounds)]
            served = subprocess.run(command, check=True, capture_output=True, text=True)
            figures = json.loads(served.stdout)
            pages = ", ".join(f"{params}: {figures[json.dumps(params)]:.2f} ms" for params in PAGES)
            print(
                f"{batches:>7} batches ({2 * batches} files, history written in {written:.0f} s):"
                f" median {pages}; gateway peak RSS {figures['peak_rss_mib']:.1f} MiB",
                flush=True,
            )


if __name__ == "__main__":
    main()
