"""``/v1/files``: uploads, batch output files, listing, content and deletion, with OpenAI's
objects and errors."""

from __future__ import annotations

from typing import Any

import openai.types
import orjson
import pytest
from fastapi.testclient import TestClient

from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.client.manifests import build_manifest
from llm_stream.files.records import new_upload_id
from llm_stream.files.store import BatchFile, LocalFileStore, file_id
from llm_stream.settings import Settings
from tests.gateway_support import chat_line, jsonl, upload


def _openai_error(response: Any, status: int, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    return error


def _write_batch(store: LocalFileStore, batch_id: str, failed: int = 0) -> None:
    """What the aggregator leaves: output and error files, then the batch object naming them."""
    store.write(batch_id, BatchFile.OUTPUT, [b'{"custom_id": "a"}\n'])
    store.write(batch_id, BatchFile.ERROR, [b'{"custom_id": "b"}\n'] * failed)
    manifest = build_manifest(batch_id, endpoint="/v1/completions", request_count=1 + failed)
    final = batch_object(
        manifest,
        BatchStatus.COMPLETED,
        reached_at={BatchStatus.COMPLETED: 1},
        output_file_id=file_id(batch_id, BatchFile.OUTPUT),
        error_file_id=file_id(batch_id, BatchFile.ERROR) if failed else None,
    )
    store.write(batch_id, BatchFile.BATCH, [final.model_dump_json().encode()])


def test_an_upload_is_an_openai_file_object_stored_with_its_record(
    client: TestClient, store: LocalFileStore
) -> None:
    content = jsonl([chat_line("a"), chat_line("b")])
    created = upload(client, content, name="requests.jsonl")

    parsed = openai.types.FileObject.model_validate(created)
    assert (parsed.purpose, parsed.filename, parsed.bytes) == (
        "batch",
        "requests.jsonl",
        len(content),
    )
    assert parsed.id.startswith("file-")
    assert client.get(f"/v1/files/{parsed.id}").json() == created
    assert client.get(f"/v1/files/{parsed.id}/content").content == content
    # The record is in the store, for every replica: a new store on the same directory has it.
    assert LocalFileStore(store.root).file_record(parsed.id) is not None


def test_an_upload_for_another_purpose_or_without_a_file_is_refused(client: TestClient) -> None:
    wrong = client.post(
        "/v1/files", files={"file": ("x.jsonl", b"{}\n")}, data={"purpose": "fine-tune"}
    )
    assert _openai_error(wrong, 400, "purpose")["code"] == "invalid_value"
    missing = client.post("/v1/files", data={"purpose": "batch"})
    assert _openai_error(missing, 400, "file")["code"] == "missing_required_parameter"


def test_an_upload_over_the_file_limit_is_refused_with_413(
    settings: Settings, store: LocalFileStore
) -> None:
    from llm_stream.gateway.app import create_app
    from tests.gateway_support import FakeBatchStream

    small = settings.with_overrides(batch_max_file_bytes=1000)
    with TestClient(create_app(small, store=store, stream=FakeBatchStream())) as client:
        # Within the multipart allowance, over the file limit: the route's exact check.
        response = client.post(
            "/v1/files", files={"file": ("x.jsonl", b"x" * 1001)}, data={"purpose": "batch"}
        )
        _openai_error(response, 413)
        # Far over: refused from its Content-Length, before the body is read.
        huge = client.post(
            "/v1/files", files={"file": ("x.jsonl", b"x" * 200_000)}, data={"purpose": "batch"}
        )
        _openai_error(huge, 413)
    assert store.index.page(purpose=None, descending=True, after=None, limit=9) == []


def test_output_and_error_files_of_written_batches_are_files(
    client: TestClient, store: LocalFileStore
) -> None:
    _write_batch(store, "b_done", failed=1)
    _write_batch(store, "b_clean")
    store.write("b_open", BatchFile.OUTPUT, [b"{}\n"])  # being written: no batch object yet

    listed = client.get("/v1/files", params={"purpose": "batch_output"}).json()
    ids = {item["id"] for item in listed["data"]}
    assert ids == {"file-b_done-output", "file-b_done-error", "file-b_clean-output"}
    for item in listed["data"]:
        assert openai.types.FileObject.model_validate(item).purpose == "batch_output"
    content = client.get("/v1/files/file-b_done-error/content").content
    assert orjson.loads(content) == {"custom_id": "b"}
    # An output file exists from the moment the batch object naming it is published.
    assert client.get("/v1/files/file-b_open-output").status_code == 200


def test_files_are_listed_newest_first_in_pages(client: TestClient, store: LocalFileStore) -> None:
    created = [  # distinct times, one second apart, as another replica may have stored them
        store.write_upload(
            new_upload_id(), [b"{}\n"], filename=f"{i}.jsonl", created_at=1_700_000_000 + i
        ).model_dump()
        for i in range(5)
    ]
    newest_first = [item["id"] for item in reversed(created)]

    first = client.get("/v1/files", params={"limit": 2}).json()
    page = [openai.types.FileObject.model_validate(item) for item in first["data"]]
    assert [file.id for file in page] == newest_first[:2]
    assert (first["first_id"], first["last_id"], first["has_more"]) == (
        newest_first[0],
        newest_first[1],
        True,
    )
    rest = client.get("/v1/files", params={"limit": 10, "after": first["last_id"]}).json()
    assert [f["id"] for f in rest["data"]] == newest_first[2:]
    assert rest["has_more"] is False
    oldest = client.get("/v1/files", params={"order": "asc", "limit": 1}).json()
    assert oldest["data"][0]["id"] == created[0]["id"]
    _openai_error(client.get("/v1/files", params={"after": "file-nothing"}), 404, "after")
    _openai_error(client.get("/v1/files", params={"limit": 0}), 400, "limit")


def test_a_deleted_file_is_gone_everywhere(client: TestClient, store: LocalFileStore) -> None:
    created = upload(client, jsonl([chat_line("a")]))
    deleted = client.delete(f"/v1/files/{created['id']}").json()
    assert openai.types.FileDeleted.model_validate(deleted).deleted is True
    for path in (f"/v1/files/{created['id']}", f"/v1/files/{created['id']}/content"):
        assert "No such File object" in _openai_error(client.get(path), 404, "id")["message"]
    _openai_error(client.delete(f"/v1/files/{created['id']}"), 404, "id")
    assert client.get("/v1/files").json()["data"] == []

    _write_batch(store, "b_out")
    assert client.delete("/v1/files/file-b_out-output").status_code == 200
    assert client.get("/v1/files/file-b_out-output").status_code == 404
    assert store.is_written("b_out")  # the batch stays written: its output is just gone


@pytest.mark.parametrize(
    "file_id_value", ["file-../../etc-output", "file-b1-batch", "file-b1-input", "nothing", "file-"]
)
def test_ids_that_name_no_file_are_404(client: TestClient, file_id_value: str) -> None:
    assert client.get(f"/v1/files/{file_id_value}").status_code == 404
    assert client.get(f"/v1/files/{file_id_value}/content").status_code == 404
    assert client.delete(f"/v1/files/{file_id_value}").status_code == 404
