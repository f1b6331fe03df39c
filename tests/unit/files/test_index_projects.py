"""The files' index keeps one tree per project: a project's page walks its own tree only,
an admin's merges every tree, and a batch file written again loses its entry in any tree."""

from __future__ import annotations

from pathlib import Path

from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.client.manifests import build_manifest
from llm_stream.files.records import new_upload_id
from llm_stream.files.store import BatchFile, LocalFileStore

NOW = 1_700_000_000


def _upload(store: LocalFileStore, at: int, project: str | None) -> str:
    record = store.write_upload(
        new_upload_id(), [b"{}\n"], filename="in.jsonl", created_at=at, project=project
    )
    assert record.project == project
    return record.id


def _page(store: LocalFileStore, project: str | None) -> list[str]:
    records = store.index.page(
        purpose=None, descending=True, after=None, limit=100, project=project
    )
    return [record.id for record in records]


def test_each_project_pages_through_its_own_tree(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)
    default = _upload(store, NOW, None)
    search = _upload(store, NOW + 1, "search")
    ads = _upload(store, NOW + 2, "ads")
    assert _page(store, "search") == [search]
    assert _page(store, "ads") == [ads]
    assert _page(store, "default") == [default]
    assert _page(store, None) == [ads, search, default]
    assert store.file_record(search) is not None
    assert (tmp_path / "_index" / "projects" / "search").is_dir()
    assert not (tmp_path / "_index" / "projects" / "default").exists()


def test_a_batch_file_is_listed_in_its_batchs_project_and_moves_when_written_again(
    tmp_path: Path,
) -> None:
    store = LocalFileStore(tmp_path)
    manifest = build_manifest("b1", endpoint="/v1/completions", request_count=1, project="ads")
    output = store.write("b1", BatchFile.OUTPUT, [b"{}\n"])
    final = batch_object(
        manifest,
        BatchStatus.COMPLETED,
        reached_at={BatchStatus.COMPLETED: NOW},
        output_file_id=output,
    )
    store.write("b1", BatchFile.BATCH, [final.model_dump_json().encode()])
    record = store.file_record(output)
    assert record is not None
    assert record.project == "ads"
    assert _page(store, "ads") == [output]
    assert _page(store, "default") == []

    (tmp_path / "b1" / "batch.json").unlink()  # a retry after a crash before the marker
    store.write("b1", BatchFile.OUTPUT, [b"{}\n", b"{}\n"])
    assert _page(store, "ads") == []  # the earlier entry is gone from the project's tree
    store.delete("b1")
    assert _page(store, None) == []
