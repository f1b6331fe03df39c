"""Every record a requests topic can carry ends in exactly one result or one dead letter.

A seeded corpus of over a thousand records, written by another Kafka client (kafka-python) in
record batches compressed with each codec, mixes valid requests of known batches with what
other teams' services really send: odd header bytes, tombstones, garbage, wrong types, huge
and oversized values, unsafe and over-long ids. One worker (fake engine) and one aggregator
run against the real broker. Nothing is lost, nothing doubled, nothing stops.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka import KafkaProducer

from llm_stream.aggregator.app import AggregatorApp
from llm_stream.contracts import BatchManifest
from llm_stream.settings import Settings
from llm_stream.worker.app import WorkerApp
from tests.fakes import FakeEngine
from tests.kafka_helpers import collect, publish

pytestmark = pytest.mark.broker

CODECS = ("gzip", "snappy", "lz4", "zstd")
RECORDS_PER_CODEC = 260
BATCHES = ("hb0", "hb1", "hb2", "hb3")
MAX_MESSAGE_BYTES = 64 * 1024


class RawHeaderKey(str):
    """A header key whose bytes are not UTF-8 (kafka-python encodes keys with ``encode``)."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfe-key-" + str.encode(self, encoding)


@dataclass
class Planned:
    value: bytes | None
    outcome: str  # "result" or "dead"
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    key: bytes | None = None
    answer_id: tuple[str, str] | None = None  # (batch_id, custom_id) of a result


class Corpus:
    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.next_id = 0
        self.answered: dict[str, set[str]] = {batch: set() for batch in BATCHES}

    def _line(self, **overrides: Any) -> tuple[dict[str, Any], str, str]:
        batch = self.random.choice(BATCHES)
        self.next_id += 1
        custom_id = f"req-{self.next_id}"
        line = {
            "batch_id": batch,
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/completions",
            "body": {"model": "fake", "prompt": f"p{self.next_id}"},
        }
        line.update(overrides)
        return line, batch, custom_id

    def _answered(self, line: dict[str, Any], batch: str, custom_id: str, **kw: Any) -> Planned:
        self.answered[batch].add(custom_id)
        return Planned(orjson.dumps(line), "result", answer_id=(batch, custom_id), **kw)

    def record(self) -> Planned:
        kind = self.random.choice(KINDS)
        if kind == "valid":
            return self._answered(*self._line())
        if kind == "odd_header_values":
            headers = [("x-bytes", b"\xff\xfe\xfd"), ("content-type", b"application/json")]
            return self._answered(*self._line(), headers=headers)
        if kind == "non_utf8_header_key":
            return self._answered(*self._line(), headers=[(RawHeaderKey("k"), b"v")])
        if kind == "garbage_traceparent":
            headers = [("traceparent", b"00-zz-\xff-01"), ("tracestate", b"\x00" * 600)]
            return self._answered(*self._line(), headers=headers)
        if kind == "negative_n":
            line, batch, custom_id = self._line()
            line["body"]["n"] = -1
            return self._answered(line, batch, custom_id)
        if kind == "unknown_endpoint":
            return self._answered(*self._line(url="/v1/unknown"))
        if kind == "missing_fields":
            line, batch, custom_id = self._line()
            del line["url"], line["body"]
            return self._answered(line, batch, custom_id)
        if kind == "duplicate_custom_id":
            batch = self.random.choice(BATCHES)
            if not self.answered[batch]:
                return self._answered(*self._line())
            custom_id = self.random.choice(sorted(self.answered[batch]))
            line, _, _ = self._line(batch_id=batch, custom_id=custom_id)
            return Planned(orjson.dumps(line), "result", answer_id=(batch, custom_id))
        if kind == "huge_prompt":  # an answer over the message limit: a 413 line
            line, batch, custom_id = self._line()
            line["body"]["prompt"] = f"random:{MAX_MESSAGE_BYTES}"
            return self._answered(line, batch, custom_id)
        if kind == "oversized_value":  # a request line over the limit: still answered
            line, batch, custom_id = self._line()
            line["body"]["padding"] = "x" * (MAX_MESSAGE_BYTES + 1000)
            return self._answered(line, batch, custom_id)
        return Planned(UNATTRIBUTABLE[kind](self), "dead", key=b"k")


UNATTRIBUTABLE = {
    "tombstone": lambda corpus: None,
    "empty": lambda corpus: b"",
    "invalid_utf8": lambda corpus: b'{"batch_id": "\xff\xfe"}',
    "garbage_json_content": lambda corpus: b"\x00\x01 not json",
    "json_array": lambda corpus: b"[1, 2, 3]",
    "wrong_types": lambda corpus: orjson.dumps({"batch_id": 7, "custom_id": ["x"]}),
    "no_custom_id": lambda corpus: orjson.dumps({"batch_id": "hb0", "url": "/v1/completions"}),
    "path_traversal": lambda corpus: orjson.dumps({"batch_id": "../../etc", "custom_id": "a"}),
    "overlong_custom_id": lambda corpus: orjson.dumps(
        {"batch_id": "hb0", "custom_id": "c" * 40_000}
    ),
    "oversized_garbage": lambda corpus: b"{" + b"z" * (MAX_MESSAGE_BYTES * 2),
}
KINDS = (
    *["valid"] * 12,
    "odd_header_values",
    "non_utf8_header_key",
    "garbage_traceparent",
    "negative_n",
    "unknown_endpoint",
    "missing_fields",
    "duplicate_custom_id",
    "huge_prompt",
    "oversized_value",
    *UNATTRIBUTABLE,
)


def _produce(bootstrap: str, topic: str, codec: str, planned: list[Planned]) -> list[str]:
    """Publish with kafka-python; return each record's ``topic/partition/offset``."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        compression_type=codec,
        max_request_size=4 * 1024 * 1024,
        linger_ms=20,
    )
    try:
        futures = [
            producer.send(topic, value=item.value, key=item.key, headers=item.headers)
            for item in planned
        ]
        producer.flush(60)
        metadata = [future.get(30) for future in futures]
    finally:
        producer.close(10)
    return [f"{topic}/{meta.partition}/{meta.offset}" for meta in metadata]


async def _produce_null_header_values(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    """aiokafka sends null header values, which kafka-python cannot."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type="zstd")
    await producer.start()
    try:
        for line in lines:
            await producer.send_and_wait(topic, line, headers=[("null-value", None)])
    finally:
        await producer.stop()


async def _committed_reach_the_end(settings: Settings) -> bool:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, group_id=settings.worker_group_id
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(settings.requests_topic, p)
            for p in consumer.partitions_for_topic(settings.requests_topic) or ()
        ]
        ends = await consumer.end_offsets(partitions)
        for partition in partitions:
            if ends[partition] and (await consumer.committed(partition)) != ends[partition]:
                return False
        return True
    finally:
        await consumer.stop()


async def test_every_hostile_record_is_answered_or_dead_lettered_exactly_once(
    isolated_settings: Settings,
) -> None:
    # Fetches far below the oversized records (128 KiB): each must still come whole.
    settings = isolated_settings.with_overrides(
        topic_partitions=3,
        max_message_bytes=MAX_MESSAGE_BYTES,
        max_in_flight=64,
        fetch_partition_bytes=16 * 1024,
        fetch_max_bytes=32 * 1024,
    )
    corpus = Corpus(seed=20261123)
    slices = {codec: [corpus.record() for _ in range(RECORDS_PER_CODEC)] for codec in CODECS}
    null_header_lines = [orjson.dumps(corpus._line()[0]) for _ in range(20)]
    for line in null_header_lines:
        document = orjson.loads(line)
        corpus.answered[document["batch_id"]].add(document["custom_id"])

    worker = WorkerApp(settings, FakeEngine())
    aggregator = AggregatorApp(settings)
    working = asyncio.create_task(worker.run())
    aggregating = asyncio.create_task(aggregator.run())
    try:
        await asyncio.sleep(3)  # topics created and the groups joined
        manifests = [
            BatchManifest(batch_id=batch, endpoint="/v1/completions", request_count=len(ids))
            .model_dump_json()
            .encode()
            for batch, ids in corpus.answered.items()
        ]
        for batch, manifest in zip(BATCHES, manifests, strict=True):
            await publish(
                settings.bootstrap_servers, settings.batches_topic, [manifest], batch.encode()
            )
        sources: dict[str, Planned] = {}
        for codec, planned in slices.items():
            positions = await asyncio.to_thread(
                _produce, settings.bootstrap_servers, settings.requests_topic, codec, planned
            )
            sources.update(zip(positions, planned, strict=True))
        await _produce_null_header_values(
            settings.bootstrap_servers, settings.requests_topic, null_header_lines
        )
        total = len(sources) + len(null_header_lines)
        expected_dead = {source for source, item in sources.items() if item.outcome == "dead"}
        expected_results = Counter(
            item.answer_id for item in sources.values() if item.outcome == "result"
        )
        expected_results.update(
            (orjson.loads(line)["batch_id"], orjson.loads(line)["custom_id"])
            for line in null_header_lines
        )
        assert total >= 1000
        assert expected_dead
        assert len(expected_results) > 500

        results = await collect(
            settings.bootstrap_servers,
            settings.results_topic,
            lambda got: len(got) >= sum(expected_results.values()),
            180,
            settle=2,
        )
        dead = await collect(
            settings.bootstrap_servers,
            settings.dead_letter_topic,
            lambda got: len(got) >= len(expected_dead),
            60,
            settle=1,
            decode=lambda value: value,
        )
        deadline = time.monotonic() + 90
        while not all(aggregator.aggregator.is_finished(batch) for batch in BATCHES):
            assert time.monotonic() < deadline, "the batches were never written"
            await asyncio.sleep(0.2)
        deadline = time.monotonic() + 30
        while not await _committed_reach_the_end(settings):
            assert time.monotonic() < deadline, "the worker's commits never reached the end"
            await asyncio.sleep(0.5)
        assert not working.done(), "the worker exited"
        assert await worker.readiness() is None
    finally:
        worker.stopping.set()
        aggregator.stopping.set()
        assert await asyncio.wait_for(working, 60) == 0
        await asyncio.wait_for(aggregating, 60)

    got_results = Counter((result["batch_id"], result["custom_id"]) for result in results)
    assert got_results == expected_results  # every attributable record answered exactly once
    assert len(dead) == len(expected_dead)
    dead_sources = await _dead_letter_sources(settings)
    assert sorted(dead_sources) == sorted(expected_dead)  # each unattributable one, once
    assert len(results) + len(dead) == total

    too_large = [r for r in results if r["response"]["status_code"] == 413]
    assert too_large, "no answer exceeded the message size"
    for batch in BATCHES:
        directory = settings.output_dir / batch
        lines = [
            orjson.loads(line)
            for name in ("output.jsonl", "error.jsonl")
            for line in (directory / name).read_bytes().splitlines()
        ]
        ids = [line["custom_id"] for line in lines]
        assert sorted(ids) == sorted(corpus.answered[batch])  # once each in the files
    print(
        f"corpus {total} records ({', '.join(CODECS)}): {len(results)} answered, "
        f"{len(dead)} dead-lettered, 0 lost, 0 doubled"
    )


async def _dead_letter_sources(settings: Settings) -> list[str]:
    consumer = AIOKafkaConsumer(
        settings.dead_letter_topic,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    sources: list[str] = []
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=2000)
            if not batches:
                return sources
            for records in batches.values():
                for record in records:
                    headers = dict(record.headers)
                    sources.append(headers["x-llm-stream-source"].decode())
    finally:
        await consumer.stop()
