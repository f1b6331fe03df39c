"""The files' index on both stores (a directory, and S3 on moto's server): pages in OpenAI's
order with ``after``, ``limit`` and ``purpose``; kept right as files are written again and
deleted; earlier files indexed once; and a page costs the same calls whatever the history."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llm_stream.files.records import StoredFile, new_upload_id
from llm_stream.files.s3 import S3FileStore
from llm_stream.files.store import BatchFile, FileStore, LocalFileStore
from llm_stream.files.upkeep import index_existing
from llm_stream.gateway.app import create_app
from llm_stream.settings import Settings
from tests.gateway_support import FakeBatchStream
from tests.s3_harness import new_bucket, s3_server

#: Times spread over every bucket level: hours, days and months apart, and two in one second.
TIMES = [1_600_000_000 + offset for offset in (0, 0, 37, 150, 4_000, 99_000, 250_000, 9_999_999)]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with s3_server() as url:
        yield url


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> FileStore:
    if request.param == "local":
        return LocalFileStore(tmp_path / "store")
    endpoint = request.getfixturevalue("endpoint")
    url = f"s3://{new_bucket(endpoint)}/tenant"
    return S3FileStore.from_url(url, endpoint_url=endpoint)


def _upload(store: FileStore, created_at: int, filename: str = "in.jsonl") -> StoredFile:
    return store.write_upload(new_upload_id(), [b"{}\n"], filename=filename, created_at=created_at)


def _write_batch(store: FileStore, batch_id: str) -> list[str]:
    """What the aggregator leaves: output and error files, then the batch object naming them."""
    ids = [store.write(batch_id, kind, [b"{}\n"]) for kind in (BatchFile.OUTPUT, BatchFile.ERROR)]
    _write_marker(store, batch_id, ids)
    return ids


def _write_marker(store: FileStore, batch_id: str, ids: list[str]) -> None:
    marker = f'{{"output_file_id": "{ids[0]}", "error_file_id": "{ids[1]}"}}'
    store.write(batch_id, BatchFile.BATCH, [marker.encode()])


def _all_pages(
    store: FileStore, *, purpose: str | None, descending: bool, limit: int
) -> list[StoredFile]:
    """Every page, each after the last file of the one before, as a client pages."""
    listed: list[StoredFile] = []
    while True:
        after = listed[-1] if listed else None
        page = store.index.page(purpose=purpose, descending=descending, after=after, limit=limit)
        assert len(page) <= limit
        listed += page
        if len(page) < limit:
            return listed


def test_pages_follow_created_at_then_id_in_either_order_and_by_purpose(store: FileStore) -> None:
    uploads = [_upload(store, created_at) for created_at in TIMES]
    outputs = [store.file_record(named) for named in _write_batch(store, "b1")]
    everything = sorted([*uploads, *outputs], key=lambda record: (record.created_at, record.id))

    for limit in (1, 3, 100):
        for descending in (False, True):
            expected = everything[::-1] if descending else everything
            listed = _all_pages(store, purpose=None, descending=descending, limit=limit)
            assert listed == expected
            for purpose in ("batch", "batch_output"):
                chosen = [record for record in expected if record.purpose == purpose]
                assert (
                    _all_pages(store, purpose=purpose, descending=descending, limit=limit) == chosen
                )
    assert store.index.page(purpose="fine-tune", descending=True, after=None, limit=9) == []
    # ``after`` is a place in the order: a file of another purpose marks it as well.
    after_output = store.index.page(purpose="batch", descending=True, after=outputs[0], limit=9)
    assert after_output == [record for record in everything[::-1] if record.purpose == "batch"]


def test_a_filename_too_long_for_a_name_is_listed_whole(store: FileStore) -> None:
    filename = "é~%/ name " * 40  # 400 characters, twice as many bytes quoted
    record = _upload(store, 1_700_000_000, filename=filename)
    assert store.index.page(purpose=None, descending=True, after=None, limit=9) == [record]


def test_deleted_files_leave_the_index_and_rewritten_ones_are_listed_once(
    store: FileStore,
) -> None:
    kept, dropped = _upload(store, 10), _upload(store, 20)
    output, error = _write_batch(store, "b1")
    _write_batch(store, "b2")
    assert store.delete_file(dropped.id)
    assert store.delete_file(error)
    store.delete("b2")
    listed = store.index.page(purpose=None, descending=True, after=None, limit=9)
    assert {record.id for record in listed} == {kept.id, output}


def test_a_batch_written_again_after_a_crash_is_listed_once_at_its_new_time(
    tmp_path: Path,
) -> None:
    store = LocalFileStore(tmp_path / "store")
    first = [store.write("b1", kind, [b"{}\n"]) for kind in (BatchFile.OUTPUT, BatchFile.ERROR)]
    for named in first:
        os.utime(store.path_of(named), (1_000, 1_000))  # the first try, long ago
    # A crash after the files were indexed, before the batch object was stored.
    _write_marker(store, "b1", first)
    store.path_of(first[0]).with_name("batch.json").unlink()
    listed = store.index.page(purpose=None, descending=True, after=None, limit=9)
    assert {record.created_at for record in listed} == {1_000}

    # Written again: each file leaves the index as it is replaced, and is listed at its new time.
    store.write("b1", BatchFile.OUTPUT, [b"{}\n{}\n"])
    listed = store.index.page(purpose=None, descending=True, after=None, limit=9)
    assert [record.id for record in listed] == ["file-b1-error"]
    _write_batch(store, "b1")
    listed = store.index.page(purpose="batch_output", descending=True, after=None, limit=9)
    assert sorted(record.id for record in listed) == sorted(first)
    assert listed == [store.file_record(record.id) for record in listed]
    assert all(record.created_at > 1_000 for record in listed)


def test_files_stored_before_the_index_are_indexed_once(store: FileStore) -> None:
    upload = _upload(store, 5)
    outputs = _write_batch(store, "b1")
    for record in store.index.page(purpose=None, descending=True, after=None, limit=9):
        store.index.remove(record)  # as a store written before the index existed
    assert index_existing(store) == 3
    listed = store.index.page(purpose=None, descending=False, after=None, limit=9)
    # Oldest first by (created_at, id): the two batch files may be a second apart.
    records = [record for named in outputs if (record := store.file_record(named)) is not None]
    in_order = [record.id for record in sorted(records, key=lambda r: (r.created_at, r.id))]
    assert [record.id for record in listed] == [upload.id, *in_order]
    assert index_existing(store) == 0  # its marker: no second reading of the store


def _history(store: FileStore, count: int) -> None:
    """``count`` uploads far older than the recent ones, across many buckets."""
    for index in range(count):
        _upload(store, 1_500_000_000 + index * 300_007, filename="old")


def _recent(store: FileStore) -> list[StoredFile]:
    return [_upload(store, 1_800_000_000 + index * 40) for index in range(12)]


class _Calls:
    """Counts the S3 API calls a client makes, by operation."""

    def __init__(self, client: Any) -> None:
        self.count = 0
        client.meta.events.register("before-call.s3.*", self._called)

    def _called(self, **_: Any) -> None:
        self.count += 1


def _page_calls(store: S3FileStore, client: TestClient, params: dict[str, Any]) -> int:
    calls = _Calls(store.client)
    response = client.get("/v1/files", params=params)
    assert response.status_code == 200, response.text
    return calls.count


def test_a_page_asks_the_store_the_same_whatever_the_history(endpoint: str, tmp_path: Path) -> None:
    """The same recent files and pages, over 10 and over 300 older files: the same S3 calls
    (listing every record would take at least one call per file)."""
    calls: list[list[int]] = []
    for older in (10, 300):
        store = S3FileStore.from_url(f"s3://{new_bucket(endpoint)}/p", endpoint_url=endpoint)
        _history(store, older)
        recent = _recent(store)
        settings = Settings(output_dir=tmp_path)
        with TestClient(create_app(settings, store=store, stream=FakeBatchStream())) as client:
            pages = [
                {"limit": 5},
                {"limit": 5, "after": recent[-5].id},
                {"limit": 5, "order": "asc", "after": recent[3].id},
                {"limit": 5, "purpose": "batch_output"},
            ]
            calls.append([_page_calls(store, client, params) for params in pages])
            listed = client.get("/v1/files", params={"limit": 5}).json()
            assert [item["id"] for item in listed["data"]] == [r.id for r in recent[::-1][:5]]
            assert listed["has_more"] is True
    assert calls[0] == calls[1], calls
    assert max(calls[0]) <= 12, calls
