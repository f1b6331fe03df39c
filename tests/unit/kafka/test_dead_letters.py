"""A dead letter carries enough to find and replay its record and never more than a message may
hold: an oversized value becomes a reference, a long key is left out, the reason is truncated."""

from __future__ import annotations

from llm_stream.kafka.dead_letters import (
    ERROR_HEADER,
    MAX_KEY_BYTES,
    MAX_REASON_CHARS,
    OMITTED_HEADER,
    SOURCE_HEADER,
    dead_letter_of,
    truncate,
)
from llm_stream.protocols import IncomingRecord

LIMIT = 1_048_576


def _record(value: bytes | None, key: bytes | None = b"b1") -> IncomingRecord:
    return IncomingRecord("llm-stream.requests", 3, 41, value, key=key)


def test_a_record_that_fits_keeps_its_value_and_key_and_names_its_source() -> None:
    letter = dead_letter_of(_record(b'{"not": "a request"}'), "no batch_id", LIMIT)
    assert (letter.value, letter.key) == (b'{"not": "a request"}', b"b1")
    assert letter.headers == {
        ERROR_HEADER: "no batch_id",
        SOURCE_HEADER: "llm-stream.requests/3/41",
    }


def test_a_value_that_would_not_fit_is_replaced_by_where_to_read_it() -> None:
    value = b"x" * LIMIT  # the record itself was at the limit: its dead letter would not be
    letter = dead_letter_of(_record(value), "too large", LIMIT)
    assert letter.value is None
    assert letter.headers[OMITTED_HEADER] == f"{LIMIT} bytes; read it at llm-stream.requests/3/41"


def test_a_value_well_under_the_limit_is_kept_whole() -> None:
    value = b"x" * (LIMIT // 2)
    letter = dead_letter_of(_record(value), "bad", LIMIT)
    assert letter.value == value
    assert OMITTED_HEADER not in letter.headers


def test_a_long_key_is_left_out_and_a_short_one_kept() -> None:
    long_key = b"k" * (MAX_KEY_BYTES + 1)
    assert dead_letter_of(_record(b"v", key=long_key), "bad", LIMIT).key is None
    short_key = b"k" * MAX_KEY_BYTES
    assert dead_letter_of(_record(b"v", key=short_key), "bad", LIMIT).key == short_key


def test_a_record_with_no_value_is_dead_lettered_without_one() -> None:
    letter = dead_letter_of(_record(None, key=None), "empty record", LIMIT)
    assert (letter.value, letter.key) == (None, None)
    assert OMITTED_HEADER not in letter.headers


def test_a_long_reason_is_truncated_and_says_how_long_it_was() -> None:
    reason = "r" * 5000
    letter = dead_letter_of(_record(b"v"), reason, LIMIT)
    header = letter.headers[ERROR_HEADER]
    assert len(header) <= MAX_REASON_CHARS
    assert header.endswith("... (5000 characters in all)")
    assert truncate("short") == "short"
    assert truncate("x" * MAX_REASON_CHARS) == "x" * MAX_REASON_CHARS
