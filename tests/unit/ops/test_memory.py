"""Handing free heap back to the OS: where the C library cannot, nothing happens."""

from __future__ import annotations

import pytest

from llm_stream.ops import memory


def test_free_heap_is_handed_back_where_the_c_library_can() -> None:
    assert isinstance(memory.release_free_heap(), bool)


def test_without_malloc_trim_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: "libnot-there.so.9")
    assert memory.release_free_heap() is False
