"""``python -m tests.measure_export_memory STORE BATCH FORMAT OUT``: export a batch in this
process and print its peak resident memory (``VmHWM``), for the export memory test and
docs/curation.md's figure. Every tenth line is judged, so the judgements' index is used."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from llm_stream.contracts import Judgement
from llm_stream.curation.export import export_batch
from llm_stream.files.store import LocalFileStore
from tests.curation_support import custom_id


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def _judgements(batch_id: str, lines: int) -> Iterator[Judgement]:
    for number in range(0, lines, 10):
        corrected = f"Corrected answer {number}." if number % 20 == 0 else None
        verdict = "gold" if number % 30 == 0 else "accepted"
        yield Judgement(
            batch_id=batch_id,
            custom_id=custom_id(number),
            verdict=verdict,
            corrected=corrected,
            judged_at=1.0,
        )


def main(argv: list[str]) -> None:
    store_dir, batch_id, fmt, out_path, lines = argv
    store = LocalFileStore(Path(store_dir))
    started = time.monotonic()
    before = peak_rss_bytes()
    with Path(out_path).open("wb") as out:
        count = asyncio.run(
            export_batch(
                store,
                batch_id,
                _judgements(batch_id, int(lines)),
                fmt,  # type: ignore[arg-type]
                out,
                keep=None if fmt != "finetune" else {"accepted", "gold", "unjudged"},
            )
        )
    report = {
        "written": count.written,
        "seconds": round(time.monotonic() - started, 2),
        "peak_rss_before": before,
        "peak_rss": peak_rss_bytes(),
    }
    sys.stdout.write(orjson.dumps(report).decode() + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
