"""The Kafka-side data types the roles share: a record as consumed, and the refusal of a record
too large to publish."""

from __future__ import annotations

import pytest

from llm_stream.protocols import NO_HEADERS, IncomingRecord, MessageTooLargeError


def test_a_record_without_headers_shares_one_mapping_nobody_can_write() -> None:
    first, second = IncomingRecord("t", 0, 0, b"a"), IncomingRecord("t", 1, 5, None)
    assert first.headers is second.headers is NO_HEADERS
    with pytest.raises(TypeError):
        first.headers["x"] = "y"  # type: ignore[index]
    assert (first.key, first.timestamp_ms) == (None, None)


def test_a_record_names_its_partition_by_topic_and_number() -> None:
    assert IncomingRecord("results", 3, 41, b"{}").topic_partition == ("results", 3)


def test_a_message_too_large_says_its_size_and_the_limit() -> None:
    error = MessageTooLargeError(2_000_000, 1_048_576)
    assert (error.size, error.limit) == (2_000_000, 1_048_576)
    assert str(error) == "2000000 bytes after compression, limit 1048576"
