"""The publishers: a record is checked against ``max_message_bytes`` once compressed, before it
is sent, so a large but compressible answer goes out and only a truly oversized one is refused,
by us; and the consumer-lag gauge follows the partitions a process owns."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, cast

import orjson
import pytest
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError
from faststream.kafka import KafkaBroker
from prometheus_client import REGISTRY

from llm_stream.batch.objects import batch_object
from llm_stream.batch.result_lines import result_message
from llm_stream.batch.status import BatchStatus
from llm_stream.contracts import BatchManifest, ResponseData, ResultMessage
from llm_stream.kafka.publishers import (
    KafkaResultPublisher,
    KafkaStatusPublisher,
    MessageSizeCheck,
    encode_result,
    forget_consumer_lag,
    report_consumer_lag,
)
from llm_stream.protocols import MessageTooLargeError
from llm_stream.settings import Settings

LIMIT = 4096


class _Broker:
    """Records what is published; raises ``error`` instead when given one (the broker's own
    size refusal)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[tuple[bytes, str, bytes | None, dict[str, str]]] = []
        self.error = error

    async def publish(
        self, value: bytes, topic: str, *, key: bytes | None, headers: Mapping[str, str]
    ) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append((value, topic, key, dict(headers)))


def _settings(compression: str = "zstd") -> Settings:
    return Settings(max_message_bytes=LIMIT, compression_type=compression)  # type: ignore[arg-type]


def _result(text: str) -> ResultMessage:
    body = {"choices": [{"index": 0, "text": text}]}
    response = ResponseData(status_code=200, request_id="r", body=body)
    return result_message("b1", "c1", response)


def _publisher(broker: _Broker, compression: str = "zstd") -> KafkaResultPublisher:
    return KafkaResultPublisher(cast(KafkaBroker, broker), _settings(compression))


def test_a_small_record_is_measured_uncompressed_with_its_key_and_headers() -> None:
    check = MessageSizeCheck(_settings())
    plain = check.size(b"x" * 100, None, {})
    assert check.size(b"x" * 100, b"key", {"name": "value"}) == plain + 3 + 4 + 5


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_a_compressible_record_over_the_limit_fits_once_compressed(codec: str) -> None:
    check = MessageSizeCheck(_settings(codec))
    value = b"the same words again " * 1000  # 21,000 bytes, five times the limit
    assert check.size(value, b"b1", {}) < LIMIT
    check.check(value, b"b1", {})


def test_without_compression_the_uncompressed_size_is_what_counts() -> None:
    value = b"the same words again " * 1000
    with pytest.raises(MessageTooLargeError) as refused:
        MessageSizeCheck(_settings("none")).check(value, b"b1", {})
    assert refused.value.size > len(value)
    assert refused.value.limit == LIMIT


def test_an_incompressible_record_over_the_limit_is_refused_with_its_size() -> None:
    with pytest.raises(MessageTooLargeError) as refused:
        MessageSizeCheck(_settings()).check(os.urandom(2 * LIMIT), b"b1", {})
    assert refused.value.size > LIMIT
    assert f"limit {LIMIT}" in str(refused.value)


async def test_a_result_is_published_keyed_by_its_batch_as_json() -> None:
    broker = _Broker()
    result = _result("hello")
    await _publisher(broker).publish_result(result, {"traceparent": "t"})
    [(value, topic, key, headers)] = broker.sent
    assert (topic, key) == (Settings().results_topic, b"b1")
    assert headers == {"traceparent": "t", "content-type": "application/json"}
    assert value == encode_result(result)
    assert ResultMessage.model_validate(orjson.loads(value)) == result


async def test_an_oversized_result_is_refused_before_the_broker_sees_it() -> None:
    broker = _Broker()
    with pytest.raises(MessageTooLargeError):
        await _publisher(broker).publish_result(_result(os.urandom(3 * LIMIT).hex()), {})
    assert broker.sent == []


@pytest.mark.parametrize("error", [MessageSizeTooLargeError(), RecordListTooLargeError()])
async def test_a_topic_whose_own_limit_is_lower_refuses_with_our_error(error: Exception) -> None:
    """The worker answers ``MessageTooLargeError`` with an error line: a crash it is not."""
    with pytest.raises(MessageTooLargeError) as refused:
        await _publisher(_Broker(error)).publish_result(_result("fits ours"), {})
    assert refused.value.limit == LIMIT


async def test_a_dead_letter_goes_to_its_topic_an_absent_value_as_empty_bytes() -> None:
    broker = _Broker()
    await _publisher(broker).publish_dead_letter(None, b"k", {"x-llm-stream-error": "why"})
    assert broker.sent == [(b"", Settings().dead_letter_topic, b"k", {"x-llm-stream-error": "why"})]


async def test_a_batch_object_is_published_to_the_status_topic_keyed_by_its_id() -> None:
    broker = _Broker()
    manifest = BatchManifest(batch_id="b1", request_count=1, endpoint="/v1/completions")
    batch = batch_object(manifest, BatchStatus.VALIDATING)
    await KafkaStatusPublisher(cast(KafkaBroker, broker), Settings()).publish_status(batch)
    [(value, topic, key, _)] = broker.sent
    assert (topic, key) == (Settings().batch_status_topic, b"b1")
    assert orjson.loads(value)["status"] == "validating"


class _Partition:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition


class _Consumer:
    def __init__(self, ends: dict[int, int | None], positions: dict[int, int]) -> None:
        self._ends, self._positions = ends, positions

    def assignment(self) -> list[_Partition]:
        return [_Partition("lagging", number) for number in self._ends]

    def highwater(self, partition: _Partition) -> int | None:
        return self._ends[partition.partition]

    async def position(self, partition: _Partition) -> int:
        return self._positions[partition.partition]


def _lag(partition: int) -> float | None:
    labels = {"group": "g-lag", "topic": "lagging", "partition": str(partition)}
    return REGISTRY.get_sample_value("llm_stream_consumer_lag", labels)


async def test_lag_is_the_end_of_the_log_minus_the_position_per_owned_partition() -> None:
    consumer: Any = _Consumer({0: 10, 1: 5, 2: None}, {0: 4, 1: 7, 2: 0})
    await report_consumer_lag(consumer, "g-lag")
    assert (_lag(0), _lag(1), _lag(2)) == (6.0, 0.0, None)  # never negative; unknown: unset
    forget_consumer_lag("g-lag", [_Partition("lagging", 0), _Partition("lagging", 2)])
    assert (_lag(0), _lag(1)) == (None, 0.0)  # a revoked partition leaves no stale value
