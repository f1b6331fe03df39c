"""Turn whatever a topic carries into an ``IncomingRecord``, without ever raising.

Other teams' producers write our input topics. Kafka declares header keys UTF-8, but nothing
enforces it, and aiokafka's record parser raises ``UnicodeDecodeError`` on a key that is not:
the fetcher then re-fetches the same batch forever. ``install_lenient_record_parsing`` makes the
fetcher fall back, for such a batch only, to aiokafka's own pure-Python parser with header keys
decoded with ``surrogateescape`` (the original bytes stay recoverable). Header values stay bytes
until we need text, and then undecodable bytes are replaced, never fatal.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.record.default_records import DefaultRecordBatch, _DefaultRecordBatchPy
from aiokafka.record.legacy_records import LegacyRecordBatch
from aiokafka.record.memory_records import _MemoryRecordsPy

from llm_stream.protocols import NO_HEADERS, IncomingRecord

_MAGIC_OFFSET = 16  # offset (8) + batch length (4) + partition leader epoch (4)


class _LenientBytes(bytearray):
    """A header key whose ``decode`` never fails (``surrogateescape`` keeps the bytes)."""

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytearray.decode(self, encoding, "surrogateescape")


class _LenientBuffer(bytearray):
    def __getitem__(self, index: Any) -> Any:
        item = bytearray.__getitem__(self, index)
        return _LenientBytes(item) if isinstance(index, slice) else item


class _LenientRecordBatch(_DefaultRecordBatchPy):  # type: ignore[misc]
    """aiokafka's pure-Python v2 batch parser over a buffer whose slices decode leniently."""

    _buffer: Any

    def __init__(self, buffer: bytes | memoryview) -> None:
        super().__init__(buffer)
        self._buffer = _LenientBuffer(self._buffer)

    def _maybe_uncompress(self) -> None:
        super()._maybe_uncompress()
        if not isinstance(self._buffer, _LenientBuffer):
            self._buffer = _LenientBuffer(self._buffer)


class _FallbackRecordBatch:
    """The fast (C) batch, re-read leniently if one of its header keys is not UTF-8.

    The fetcher skips offsets it already yielded, so the lenient pass may start from the top.
    """

    def __init__(self, buffer: memoryview) -> None:
        self._buffer = buffer
        self._fast = DefaultRecordBatch(buffer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fast, name)

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._fast
        except UnicodeDecodeError:
            yield from _LenientRecordBatch(self._buffer)


class LenientMemoryRecords(_MemoryRecordsPy):  # type: ignore[misc]
    """aiokafka's record-set splitter, handing out batches that survive bad header keys."""

    def next_batch(self, *args: Any) -> Any:
        next_slice = self._next_slice
        if next_slice is None or len(next_slice) <= _MAGIC_OFFSET:
            return super().next_batch()
        if next_slice[_MAGIC_OFFSET] < 2:  # legacy message sets carry no headers
            return super().next_batch()
        self._cache_next()
        return _FallbackRecordBatch(next_slice)


_ = LegacyRecordBatch  # legacy batches are built by the base class


def install_lenient_record_parsing() -> None:
    """Make every aiokafka consumer of this process parse record batches leniently."""
    aiokafka_fetcher.MemoryRecords = LenientMemoryRecords


def header_bytes(key: str) -> bytes:
    """The original bytes of a header key (undoing the lenient decoding)."""
    return key.encode("utf-8", "surrogateescape")


def text_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Header keys and values as text, undecodable bytes replaced; null values left out."""
    text: dict[str, str] = {}
    for key, value in headers or ():
        if value is None:
            continue
        name = header_bytes(key).decode("utf-8", "replace") if isinstance(key, str) else str(key)
        text[name] = value.decode("utf-8", "replace")
    return text


def decode_record(record: Any) -> IncomingRecord:
    """The service's view of an aiokafka ``ConsumerRecord``; never raises. It runs for every
    record: values and keys that are already ``bytes`` (aiokafka's C parser) are not copied."""
    value, key, headers = record.value, record.key, record.headers
    return IncomingRecord(
        record.topic,
        record.partition,
        record.offset,
        value if value is None or type(value) is bytes else bytes(value),
        key if key is None or type(key) is bytes else bytes(key),
        text_headers(headers) if headers else NO_HEADERS,
        record.timestamp,
    )
