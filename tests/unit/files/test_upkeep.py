"""What a process does to the store as it opens it: leftovers of writers that stopped part
way are removed (only old ones: a write in flight is left alone), earlier files are indexed,
and a store that refuses either is logged, never a reason not to start."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_stream.files.opening import open_store
from llm_stream.files.records import new_upload_id
from llm_stream.files.s3 import S3FileStore
from llm_stream.files.store import STAGING_DIR, BatchFile, LocalFileStore
from llm_stream.files.upkeep import prepare_store
from llm_stream.settings import Settings
from tests.s3_harness import new_bucket, s3_server

HOUR = 3600.0


def test_temporaries_are_written_in_the_staging_directory(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)
    seen: list[Path] = []

    def content() -> Iterator[bytes]:
        seen.extend((tmp_path / STAGING_DIR).iterdir())  # while the file is being written
        yield b"{}\n"

    store.write("b1", BatchFile.OUTPUT, content())
    assert [path.name.startswith(".output.jsonl.tmp-") for path in seen] == [True]
    assert list((tmp_path / STAGING_DIR).iterdir()) == []
    assert [path.name for path in (tmp_path / "b1").iterdir()] == ["output.jsonl"]


def test_opening_the_store_removes_old_temporaries_only(tmp_path: Path) -> None:
    staging = tmp_path / STAGING_DIR
    staging.mkdir()
    old, fresh = staging / ".output.jsonl.tmp-old", staging / ".output.jsonl.tmp-fresh"
    for path in (old, fresh):
        path.write_bytes(b"part of a file")
    os.utime(old, (0, os.path.getmtime(old) - 2 * HOUR))

    open_store(Settings(output_dir=tmp_path, store_leftover_age_s=HOUR))
    assert list(staging.iterdir()) == [fresh]


def test_a_store_that_refuses_upkeep_is_logged_and_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalFileStore(tmp_path)

    def refuse(*_: object) -> None:
        raise PermissionError("read-only volume")

    monkeypatch.setattr(store, "tidy", refuse)
    monkeypatch.setattr(store.index, "is_built", refuse)
    with caplog.at_level(logging.WARNING):
        prepare_store(store, HOUR)
    assert [record.getMessage() for record in caplog.records] == [
        "could not tidy the file store",
        "could not index the file store's earlier files",
    ]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with s3_server() as url:
        yield url


def test_unfinished_multipart_uploads_under_the_prefix_are_aborted_when_old(
    endpoint: str,
) -> None:
    bucket = new_bucket(endpoint)
    store = S3FileStore.from_url(f"s3://{bucket}/tenant", endpoint_url=endpoint)
    client = store.client
    for key in ("tenant/_uploads/" + new_upload_id(), "elsewhere/x"):
        client.create_multipart_upload(Bucket=bucket, Key=key)

    def unfinished() -> list[str]:
        listed = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return sorted(upload["Key"] for upload in listed)

    # moto says every upload began on 2010-11-10: a century's age leaves them, an hour's not.
    assert store.tidy(100 * 365 * 24 * HOUR) == 0  # begun since: maybe still going
    assert len(unfinished()) == 2
    settings = Settings(storage_url=f"s3://{bucket}/tenant", s3_endpoint_url=endpoint)
    open_store(settings.with_overrides(store_leftover_age_s=HOUR))
    assert unfinished() == ["elsewhere/x"]  # outside the prefix: not the store's
