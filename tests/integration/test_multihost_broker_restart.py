"""The broker restarted mid-batch, keeping its log in S3 (Tansu on moto's S3 server on
loopback), with workers on two other hosts and an aggregator on the broker's.

This Tansu loses acknowledged writes across a restart while clients stay connected (see
../shared/FACTS.md: it comes back from a stale watermark and writes over acknowledged
batches), so the test asserts what the service controls and counts what the broker lost:
no role exits, every role is back at work after the restart, nothing is doubled in the files,
and every request the broker kept is answered exactly once unless the broker lost its result.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest

from llm_stream.client import BatchClient
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from tests import netns
from tests.multihost import (
    TansuOnS3,
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

REQUESTS = 400
LATENCY_S = 0.5
CONCURRENCY = 4
#: A batch whose lines or results the broker lost is written as expired when this ends.
WINDOW = "60s"


async def submit(settings: Settings, batch_id: str, lines: list[dict[str, object]]) -> None:
    await ensure_topics(settings)
    async with BatchClient.from_settings(settings) as client:
        await client.submit(
            lines, batch_id=batch_id, endpoint="/v1/completions", completion_window=WINDOW
        )


def test_every_role_rides_through_a_broker_restart_mid_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"t-{uuid.uuid4().hex[:10]}"
    lines = request_lines(REQUESTS, "restart")
    with netns.network(2) as network, TansuOnS3(network.broker_address, tmp_path) as broker:
        env = settings_env(
            name,
            broker.bootstrap_servers,
            4,
            max_in_flight=str(2 * CONCURRENCY),
            orphan_batch_timeout_s="40",
        )
        settings = Settings(**env)
        with roles(tmp_path, env) as started:
            started.aggregator()
            workers = [started.worker(host, LATENCY_S, CONCURRENCY) for host in network.hosts]
            wait_for(lambda: all(w.assignment() for w in workers), 60, "both workers assigned")
            assigned = {w.name: w.assignment() for w in workers}
            asyncio.run(submit(settings, "restart", lines))
            wait_for(lambda: sum(len(w.answered()) for w in workers) >= 60, 60, "work under way")
            answered_at_restart = {w.name: len(w.answered()) for w in workers}
            broker.stop()
            time.sleep(2)
            broker.start()
            restarted_at = time.time()
            batch_dir = started.batch_dir("restart")
            wait_for(lambda: (batch_dir / "batch.json").exists(), 120, "the batch written")
            written_after_restart = (batch_dir / "batch.json").stat().st_mtime > restarted_at
            time.sleep(2)
            alive = {c.name: c.process.poll() is None for c in started.children}
            assigned_after = {w.name: w.assignment() for w in workers}
            answered = {w.name: set(w.answered()) for w in workers}
            kept_requests = asyncio.run(
                read_topic(broker.bootstrap_servers, settings.requests_topic)
            )
            kept_results = asyncio.run(read_topic(broker.bootstrap_servers, settings.results_topic))
            codes = {c.name: c.stop() for c in started.children}
    status = orjson.loads((batch_dir / "batch.json").read_bytes())["status"]
    sent = {line["custom_id"] for line in lines}
    requests_kept = {value["custom_id"] for value, _ in kept_requests if value}
    results_kept = {value["custom_id"] for value, _ in kept_results if value}
    by_a_worker = set().union(*answered.values())
    in_files = file_ids(batch_dir)
    missing = sent - set(in_files)
    figures = {
        "sent": len(sent),
        "answered_in_files": len(in_files),
        "doubled_in_files": sum(n - 1 for n in in_files.values()),
        "batch_status": status,
        "requests_lost_by_broker": len(sent - requests_kept),
        "results_lost_by_broker": len((missing & requests_kept & by_a_worker) - results_kept),
        "answered_at_restart": answered_at_restart,
        "answered_in_all": {worker: len(ids) for worker, ids in answered.items()},
        "assigned": assigned,
        "assigned_after_restart": assigned_after,
        "broker_starts": broker.starts,
        "exit_codes": codes,
        "alive_at_the_end": alive,
    }
    path = write_artifact("broker_restart.json", figures)
    with capsys.disabled():
        print(f"\nbroker restarted mid-batch: {figures}\n  written to {path}")
    assert broker.starts == 2  # the restart happened, on the same address and storage
    assert all(alive.values()), f"a role exited: {alive}"
    assert set(codes.values()) == {0}
    assert written_after_restart  # the aggregator read, wrote and published after the restart
    for worker, ids in answered.items():  # each answered again after the restart
        assert len(ids) > answered_at_restart[worker], worker
        assert assigned_after[worker], worker
    assert in_files == Counter(dict.fromkeys(in_files, 1))  # nothing doubled
    # What the service controls: a request the broker kept was answered by a worker, and a
    # result the broker kept is in the files. What is missing, the broker lost.
    assert (missing & requests_kept) - by_a_worker == set(), "kept requests never answered"
    assert (missing & results_kept) == set(), "kept results not in the files"
