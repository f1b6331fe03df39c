"""An aggregator killed with SIGKILL and replaced with no local state still writes each batch
exactly once and completely."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from llm_stream.contracts import BatchManifest, ResponseData, ResultMessage
from tests.kafka_helpers import collect, publish
from tests.processes import running

pytestmark = pytest.mark.broker


def _result(batch_id: str, custom_id: str) -> bytes:
    ok = not custom_id.endswith("7")
    return (
        ResultMessage(
            batch_id=batch_id,
            id=f"batch_req_{batch_id}_{custom_id}",
            custom_id=custom_id,
            response=ResponseData(
                status_code=200 if ok else 400, request_id="r", body={"custom_id": custom_id}
            ),
        )
        .model_dump_json()
        .encode()
    )


def _manifest(batch_id: str, count: int) -> bytes:
    manifest = BatchManifest(batch_id=batch_id, endpoint="/v1/completions", request_count=count)
    return manifest.model_dump_json().encode()


async def _wait_for(path: Path, within: float) -> None:
    deadline = time.monotonic() + within
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} not written"
        await asyncio.sleep(0.2)


async def test_a_killed_aggregator_is_replaced_without_losing_or_repeating_a_line(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    output = tmp_path / "batches"
    settings = {
        "bootstrap_servers": kafka_bootstrap,
        "results_topic": f"{unique_name}.results",
        "batches_topic": f"{unique_name}.batches",
        "batch_status_topic": f"{unique_name}.status",
        "aggregator_group_id": f"{unique_name}.aggregators",
        "output_dir": str(output),
        "topic_partitions": "3",
    }
    results, batches = settings["results_topic"], settings["batches_topic"]
    await publish(kafka_bootstrap, batches, [_manifest("early", 50), _manifest("late", 300)])
    first_half = [_result("early", f"e{i}") for i in range(50)]
    first_half += [_result("late", f"l{i}") for i in range(150)]
    await publish(kafka_bootstrap, results, first_half)

    with running(["aggregator"], settings, tmp_path / "first.log") as first:
        await _wait_for(output / "early" / "batch.json", within=60)
        await asyncio.sleep(1.5)  # let it commit what it can
        first.send_signal(signal.SIGKILL)
        first.wait()
    early_written = (output / "early" / "batch.json").stat().st_mtime_ns
    assert not (output / "late").exists()
    # The replacement has no local state: spools are private to each process.

    second_half = [_result("late", f"l{i}") for i in range(150, 300)]
    duplicates = [_result("late", f"l{i}") for i in range(0, 300, 10)]
    duplicates += [_result("early", f"e{i}") for i in range(10)]
    await publish(kafka_bootstrap, results, second_half + duplicates)

    with running(["aggregator"], settings, tmp_path / "second.log"):
        await _wait_for(output / "late" / "batch.json", within=60)

    late = [
        orjson.loads(line)
        for name in ("output.jsonl", "error.jsonl")
        for line in (output / "late" / name).read_bytes().splitlines()
    ]
    assert Counter(line["custom_id"] for line in late) == Counter(f"l{i}" for i in range(300))
    failed = [line for line in late if line["response"]["status_code"] != 200]
    assert {line["custom_id"] for line in failed} == {f"l{i}" for i in range(300) if i % 10 == 7}
    assert (output / "early" / "batch.json").stat().st_mtime_ns == early_written
    statuses = await collect(
        kafka_bootstrap,
        settings["batch_status_topic"],
        lambda got: sum(s["status"] == "completed" for s in got) >= 2,
        within=30,
        settle=1,
    )
    completed = Counter(s["id"] for s in statuses if s["status"] == "completed")
    assert completed == {"early": 1, "late": 1}
