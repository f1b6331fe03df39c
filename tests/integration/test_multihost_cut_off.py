"""A worker cut off from the network mid-batch, its process alive: the group gives its
partitions to the other host's worker, the batch completes with each request once in the
files, and when the link comes back the cut-off worker's late results change nothing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

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

REQUESTS = 400
LATENCY_S = 0.2
CONCURRENCY = 4


def test_a_worker_cut_off_mid_batch_changes_nothing_in_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"t-{uuid.uuid4().hex[:10]}"
    lines = request_lines(REQUESTS, "cutoff")
    with netns.network(2) as network, EmbeddedBroker(host=network.broker_address) as broker:
        env = settings_env(name, broker.bootstrap_servers, 4, max_in_flight=str(2 * CONCURRENCY))
        settings = Settings(**env)
        with roles(tmp_path, env) as started:
            aggregator = started.aggregator()
            cut, survivor = (started.worker(host, LATENCY_S, CONCURRENCY) for host in network.hosts)
            wait_for(
                lambda: bool(cut.assignment()) and bool(survivor.assignment()),
                60,
                "both workers assigned",
            )
            assigned = {w.name: w.assignment() for w in (cut, survivor)}
            asyncio.run(submit_batch(settings, "cutoff", lines))
            wait_for(lambda: len(cut.answered()) >= 40, 60, "the first worker answering")
            network.hosts[0].cut()
            cut_at = time.time()
            answered_before_cut = len(cut.answered())
            batch_dir = started.batch_dir("cutoff")
            wait_for(lambda: (batch_dir / "batch.json").exists(), 90, "the batch written")
            written_at = time.time()
            files = {p.name: p.read_bytes() for p in batch_dir.iterdir()}
            moved = survivor.assignment()
            in_flight_at_restore = cut.in_flight()
            network.hosts[0].restore()
            # Back on the network: its results still in flight are published now, late.
            wait_for(lambda: bool(cut.assignment()), 60, "the cut-off worker back in the group")
            wait_for(lambda: cut.in_flight() == 0, 60, "the cut-off worker's late results out")
            time.sleep(2)  # the aggregator reads them
            late_answers = len(cut.answered()) - answered_before_cut
            alive_after = cut.process.poll() is None
            results = asyncio.run(read_topic(broker.bootstrap_servers, settings.results_topic))
            unchanged = {p.name: p.read_bytes() for p in batch_dir.iterdir()} == files
            codes = {w.name: w.stop() for w in (cut, survivor)}
            assert aggregator.stop() == 0
    on_topic = Counter(value["custom_id"] for value, _ in results)
    in_files = file_ids(batch_dir)
    figures = {
        "sent": REQUESTS,
        "answered_in_files": len(in_files),
        "lost": REQUESTS - len(in_files),
        "doubled_in_files": sum(n - 1 for n in in_files.values()),
        "results_on_topic": sum(on_topic.values()),
        "answered_twice_on_topic": sum(1 for n in on_topic.values() if n > 1),
        "cut_worker_in_flight_at_restore": in_flight_at_restore,
        "cut_worker_answered_before_cut": answered_before_cut,
        "cut_worker_answered_after_cut": late_answers,
        "assigned": assigned,
        "survivor_assigned_after_cut": moved,
        "seconds_cut_to_written": round(written_at - cut_at, 1),
        "exit_codes": codes,
    }
    path = write_artifact("cut_off.json", figures)
    with capsys.disabled():
        print(f"\nworker cut off mid-batch: {figures}\n  written to {path}")
    assert in_files == dict.fromkeys((line["custom_id"] for line in lines), 1)
    assert unchanged, "late results rewrote the batch's files"
    assert in_flight_at_restore > 0, "the cut-off worker had nothing left to publish late"
    # Its late results are on the topic beside the survivor's answers to the same requests
    # (a record's timestamp is its creation's, so they are told apart by count, not time).
    twice = figures["answered_twice_on_topic"]
    assert twice >= in_flight_at_restore, "its late results never reached the topic"
    assert len(moved) == 4, f"the survivor did not take every partition: {moved}"
    assert alive_after, "the cut-off worker exited"
    assert set(codes.values()) == {0}
