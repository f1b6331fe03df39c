"""Scale-out across hosts: 1, 2 and 3 workers, each in its own network namespace, against one
broker on this host, on an engine that holds every request for a fixed time.

A benchmark, not a timed assertion: it prints requests/s for each count and the ratio to one
worker (and writes them under the test artifacts). What it asserts is what makes the figures
mean anything: every request is in the files exactly once, and the broker spread the
partitions (every worker owned some and answered some). What each worker was assigned is
printed with the figures.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from llm_stream.broker.embedded import EmbeddedBroker
from llm_stream.settings import Settings
from tests import netns
from tests.kafka_helpers import submit_batch
from tests.multihost import (
    file_ids,
    read_topic,
    request_lines,
    roles,
    settings_env,
    wait_for,
    write_artifact,
)

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(netns.missing() is not None, reason=f"no namespaces: {netns.missing()}"),
]

PARTITIONS = 6  # split evenly by 1, 2 and 3 workers
LATENCY_S = 0.5
CONCURRENCY = 4  # in flight per worker: 8, so one worker answers at most 16 requests/s
SECONDS_OF_WORK = 10  # per run, at that rate


def run_once(workers: int, network: netns.Network, broker: str, tmp: Path) -> dict[str, Any]:
    """One batch on ``workers`` hosts; what the broker assigned, the rate, the files."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    env = settings_env(name, broker, PARTITIONS, max_in_flight=str(2 * CONCURRENCY))
    settings = Settings(**env)
    count = int(workers * 2 * CONCURRENCY / LATENCY_S * SECONDS_OF_WORK)
    batch = f"scale{workers}"
    everything = {f"{settings.requests_topic}/{p}" for p in range(PARTITIONS)}
    with roles(tmp / f"{workers}-workers", env) as started:
        aggregator = started.aggregator()
        group = [started.worker(host, LATENCY_S, CONCURRENCY) for host in network.hosts[:workers]]
        wait_for(
            lambda: (
                all(w.assignment() for w in group)
                and set().union(*(w.assignment() for w in group)) == everything
            ),
            60,
            "every worker assigned and every partition owned",
        )
        time.sleep(3)  # a rebalance still under way shows now, not mid-batch
        assigned = {w.name: w.assignment() for w in group}
        began = time.time()
        asyncio.run(submit_batch(settings, batch, request_lines(count, batch)))
        batch_dir = started.batch_dir(batch)
        wait_for(lambda: (batch_dir / "batch.json").exists(), 120, "the batch written")
        results = asyncio.run(read_topic(broker, settings.results_topic))
        answered = {w.name: len(w.answered()) for w in group}
        at_end = {w.name: w.assignment() for w in group}
        codes = {w.name: w.stop() for w in group}
        assert aggregator.stop() == 0
    first_answer: dict[str, int] = {}
    for value, timestamp in results:
        first_answer.setdefault(value["custom_id"], timestamp)
    seconds = max(first_answer.values()) / 1000 - began
    return {
        "workers": workers,
        "requests": count,
        "seconds": round(seconds, 2),
        "requests_per_s": round(count / seconds, 1),
        "assigned": assigned,
        "assigned_at_end": at_end,
        "answered_by": answered,
        "exit_codes": codes,
        "in_files": file_ids(batch_dir),
        "sent": [line["custom_id"] for line in request_lines(count, batch)],
    }


def test_workers_on_separate_hosts_share_the_partitions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = []
    with netns.network(3) as network, EmbeddedBroker(host=network.broker_address) as broker:
        for workers in (1, 2, 3):
            runs.append(run_once(workers, network, broker.bootstrap_servers, tmp_path))
    base = runs[0]["requests_per_s"]
    table = [
        {key: run[key] for key in ("workers", "requests", "seconds", "requests_per_s")}
        | {"ratio": round(run["requests_per_s"] / base, 2)}
        | {key: run[key] for key in ("assigned", "answered_by", "assigned_at_end")}
        for run in runs
    ]
    path = write_artifact("scale_out.json", table)
    with capsys.disabled():
        print(f"\nscale-out (echo engine, {LATENCY_S} s a request, {2 * CONCURRENCY} in flight):")
        for row in table:
            print(
                f"  {row['workers']} worker(s): {row['requests_per_s']} requests/s "
                f"({row['ratio']}x one), {row['requests']} requests in {row['seconds']} s; "
                f"assigned {row['assigned']}; answered {row['answered_by']}"
            )
        print(f"  written to {path}")
    for run in runs:
        assert run["in_files"] == dict.fromkeys(run["sent"], 1)  # each request once
        assert set(run["exit_codes"].values()) == {0}
        for worker, partitions in run["assigned"].items():
            assert partitions, f"{worker} was assigned nothing: {run['assigned']}"
            assert run["answered_by"][worker] > 0, f"{worker} answered nothing"
