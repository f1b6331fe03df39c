"""What every route works with: one ``Gateway`` per app, its input links over its own store, and
a store's local copy entered and left off the event loop, its errors passed through."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import pytest

from llm_stream.files.opening import local_copy
from llm_stream.files.store import FileStore, LocalFileStore
from llm_stream.gateway.auth_limit import FailedAuthLimiter
from llm_stream.gateway.revocations import RevokedSessions
from llm_stream.gateway.state import Gateway
from llm_stream.settings import Settings
from tests.gateway_support import FakeBatchStream


class _Copies:
    """A store whose local copies say which thread entered and left them, and how it ended."""

    def __init__(self, path: Path, *, swallow: bool = False) -> None:
        self.path, self.swallow = path, swallow
        self.threads: list[str] = []
        self.ended_with: list[type[BaseException] | None] = []

    @contextmanager
    def local_copy(self, file_id: str) -> Iterator[Path]:
        self.threads.append(threading.current_thread().name)
        try:
            yield self.path
        except BaseException as error:
            self.ended_with.append(type(error))
            if not self.swallow:
                raise
        else:
            self.ended_with.append(None)
        finally:
            self.threads.append(threading.current_thread().name)


async def test_a_local_copy_is_entered_and_left_in_worker_threads(tmp_path: Path) -> None:
    copies = _Copies(tmp_path / "content")
    async with local_copy(cast(FileStore, copies), "file-1") as path:
        assert path == tmp_path / "content"
    assert copies.ended_with == [None]
    assert threading.main_thread().name not in copies.threads
    assert len(copies.threads) == 2


async def test_an_error_in_the_block_reaches_the_copy_and_then_the_caller(tmp_path: Path) -> None:
    copies = _Copies(tmp_path)
    with pytest.raises(KeyError):
        async with local_copy(cast(FileStore, copies), "file-1"):
            raise KeyError("in the route")
    assert copies.ended_with == [KeyError]


async def test_an_error_the_copy_handles_goes_no_further(tmp_path: Path) -> None:
    copies = _Copies(tmp_path, swallow=True)
    async with local_copy(cast(FileStore, copies), "file-1"):
        raise KeyError("handled by the store")
    assert copies.ended_with == [KeyError]


async def test_a_gateways_input_links_read_its_own_store(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "batches")
    store.link_input("b1", "file-upload")
    gateway = Gateway(
        Settings(), store, FakeBatchStream(), FailedAuthLimiter(5, 60.0), RevokedSessions()
    )
    assert await gateway.input_links.of(["b1", "b2"]) == {"b1": "file-upload", "b2": None}
