"""Records other producers write decode without raising: header keys that are not UTF-8 (in
batches of every codec), null header values, tombstones."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiokafka.record.default_records import DefaultRecordBatch, _DefaultRecordBatchBuilderPy

from llm_stream.kafka.records import LenientMemoryRecords, decode_record, header_bytes, text_headers

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


class RawKey(str):
    """A header key whose encoded bytes are not UTF-8."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfe-raw"


def _batch(codec: int) -> bytes:
    builder = _DefaultRecordBatchBuilderPy(
        magic=2,
        compression_type=codec,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    builder.append(0, timestamp=None, key=b"k", value=b"first", headers=[("ok", b"1")])
    builder.append(1, timestamp=None, key=None, value=b"odd", headers=[(RawKey("x"), b"\xff")])
    builder.append(2, timestamp=None, key=None, value=None, headers=[("null", None)])
    return bytes(builder.build())


@pytest.mark.parametrize("codec", CODECS)
def test_a_batch_with_a_non_utf8_header_key_is_read_whole(codec: str) -> None:
    data = _batch(CODECS[codec])
    with pytest.raises(UnicodeDecodeError):  # what aiokafka's own parser does
        list(DefaultRecordBatch(data))
    records = LenientMemoryRecords(data)
    batch = records.next_batch()
    seen: dict[int, object] = {}
    for record in batch:  # the fetcher skips offsets it already yielded: so do we here
        seen.setdefault(record.offset, record)
    assert sorted(seen) == [0, 1, 2]
    odd = seen[1]
    assert odd.value == b"odd"  # type: ignore[attr-defined]
    ((key, value),) = odd.headers  # type: ignore[attr-defined]
    assert header_bytes(key) == b"\xff\xfe-raw"
    assert value == b"\xff"
    assert not records.has_next()


def test_header_text_replaces_bad_bytes_and_skips_null_values() -> None:
    headers = [("a", b"\xff"), ("b", None), ("\udcff\udcfe", b"v"), ("traceparent", b"00-x")]
    assert text_headers(headers) == {"a": "\ufffd", "\ufffd\ufffd": "v", "traceparent": "00-x"}


def test_a_tombstone_decodes_to_an_empty_record() -> None:
    consumer_record = SimpleNamespace(
        topic="t", partition=1, offset=5, value=None, key=None, headers=None, timestamp=7
    )
    record = decode_record(consumer_record)
    assert record.value is None
    assert record.headers == {}
    assert record.topic_partition == ("t", 1)
