"""Which store a process opens, from its settings: the local directory, or object storage for
an ``s3://`` URL; either way prepared before it is used."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from llm_stream.files.opening import open_store
from llm_stream.files.records import new_upload_id
from llm_stream.files.s3 import S3FileStore
from llm_stream.files.store import BatchFile, LocalFileStore
from llm_stream.settings import Settings
from tests.s3_harness import new_bucket, s3_server


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with s3_server() as url:
        yield url


def _keys(store: S3FileStore) -> list[str]:
    """Every key in the store's bucket."""
    listed = store.client.list_objects_v2(Bucket=store.bucket)
    return [stored["Key"] for stored in listed.get("Contents", [])]


def test_settings_pick_the_store(tmp_path: Path, endpoint: str) -> None:
    local = open_store(Settings(output_dir=tmp_path / "out"))
    assert isinstance(local, LocalFileStore)
    assert local.root == tmp_path / "out"
    bucket = new_bucket(endpoint)
    remote = open_store(Settings(storage_url=f"s3://{bucket}", s3_endpoint_url=endpoint))
    assert isinstance(remote, S3FileStore)
    assert (remote.bucket, remote.prefix) == (bucket, "")
    remote.write("b1", BatchFile.OUTPUT, [b"x\n"])
    assert _keys(remote) == ["_index/built", "b1/output.jsonl"]  # at no prefix: the index too
    for url in ("http://bucket/x", "s3://", "s3://Bad_Bucket/x", "/data/batches"):
        with pytest.raises(ValidationError, match="storage_url"):
            Settings(storage_url=url)


def test_an_opened_local_store_is_prepared_its_earlier_files_indexed(tmp_path: Path) -> None:
    earlier = LocalFileStore(tmp_path / "out")
    upload_id = new_upload_id()
    earlier.write_upload(upload_id, [b"{}\n"], filename="in.jsonl", created_at=1_700_000_000)
    shutil.rmtree(tmp_path / "out" / "_index")  # written before the index existed
    store = open_store(Settings(output_dir=tmp_path / "out"))
    assert store.index.is_built()
    listed = store.index.page(purpose=None, descending=False, after=None, limit=10)
    assert [record.id for record in listed] == [upload_id]
