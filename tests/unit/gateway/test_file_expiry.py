"""Expiry through the gateway: an upload's ``expires_after`` (OpenAI's bounds, its 30-day
default for batch inputs from the settings), a batch's ``output_expires_after`` on its batch
object and manifest, a file past its expiry answered 404 as OpenAI answers a deleted one
(before and after the sweep), and the settings' and aggregator's defaults."""

from __future__ import annotations

import time
from typing import Any

import openai.types
import pydantic
import pytest
from fastapi.testclient import TestClient

from llm_stream.aggregator.file_expiry import with_default_expiry
from llm_stream.client.manifests import build_manifest
from llm_stream.contracts import ExpiresAfter
from llm_stream.files.store import LocalFileStore
from llm_stream.files.upkeep import sweep_expired
from llm_stream.settings import Settings
from tests.gateway_support import FakeBatchStream, chat_line, jsonl

DAY = 86_400


def _upload(client: TestClient, **expires_after: Any) -> Any:
    fields = {f"expires_after[{name}]": str(value) for name, value in expires_after.items()}
    return client.post(
        "/v1/files",
        files={"file": ("in.jsonl", jsonl([chat_line("a")]))},
        data={"purpose": "batch", **fields},
    )


def test_an_upload_expires_as_asked_or_after_openais_default(client: TestClient) -> None:
    before = int(time.time())
    asked = _upload(client, anchor="created_at", seconds=7200)
    assert asked.status_code == 200, asked.text
    file = openai.types.FileObject.model_validate(asked.json())
    assert file.expires_at == file.created_at + 7200
    default = openai.types.FileObject.model_validate(_upload(client).json())
    assert default.expires_at is not None
    assert default.expires_at - default.created_at == 30 * DAY
    assert default.created_at >= before
    assert client.get(f"/v1/files/{file.id}").json()["expires_at"] == file.expires_at
    listed = {item["id"]: item["expires_at"] for item in client.get("/v1/files").json()["data"]}
    assert listed == {file.id: file.expires_at, default.id: default.expires_at}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"anchor": "created_at", "seconds": 3599}, "expires_after[seconds]"),
        ({"anchor": "created_at", "seconds": 2_592_001}, "expires_after[seconds]"),
        ({"anchor": "last_active_at", "seconds": 7200}, "expires_after[anchor]"),
    ],
)
def test_expiry_outside_openais_bounds_is_400_naming_it(
    client: TestClient, fields: dict[str, Any], param: str
) -> None:
    refused = _upload(client, **fields)
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == param


def test_a_file_past_its_expiry_answers_as_a_deleted_one(
    client: TestClient, store: LocalFileStore
) -> None:
    file_id = _upload(client, anchor="created_at", seconds=3600).json()["id"]
    record = store.file_record(file_id)
    assert record is not None
    assert record.expires_at is not None
    assert store.delete_file(file_id)
    store.write_upload(  # the same file uploaded an hour earlier: it expired just now
        file_id,
        [b"{}\n"],
        filename="in.jsonl",
        created_at=record.created_at - 3600,
        expires_at=record.expires_at - 3600,
    )
    for response in (
        client.get(f"/v1/files/{file_id}"),
        client.get(f"/v1/files/{file_id}/content"),
        client.delete(f"/v1/files/{file_id}"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["message"] == f"No such File object: {file_id}"
    assert client.get("/v1/files").json()["data"] == []
    asked = {
        "input_file_id": file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    refused = client.post("/v1/batches", json=asked)
    assert refused.status_code == 404
    assert refused.json()["error"]["param"] == "input_file_id"
    # The sweep then deletes it from the store.
    assert sweep_expired(store, time.time()) == 1
    assert store.file_record(file_id) is None
    assert not (store.root / "_uploads" / file_id).exists()


def test_a_batch_carries_its_output_expiry_to_the_manifest_and_object(
    client: TestClient, stream: FakeBatchStream
) -> None:
    file_id = _upload(client).json()["id"]
    policy = {"anchor": "created_at", "seconds": 7 * DAY}
    asked = {
        "input_file_id": file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        "output_expires_after": policy,
    }
    created = client.post("/v1/batches", json=asked)
    assert created.status_code == 200, created.text
    batch = created.json()
    openai.types.Batch.model_validate(batch)
    assert batch["output_expires_after"] == policy
    assert stream.manifests[batch["id"]].output_expires_after == ExpiresAfter(**policy)
    too_short = client.post(
        "/v1/batches", json={**asked, "output_expires_after": {**policy, "seconds": 60}}
    )
    assert too_short.status_code == 400
    plain = client.post(
        "/v1/batches", json={k: v for k, v in asked.items() if k != "output_expires_after"}
    )
    assert "output_expires_after" not in plain.json()


def test_the_defaults_are_settings_within_openais_bounds() -> None:
    assert Settings().files_input_expires_after_s == 30 * DAY
    assert Settings().files_output_expires_after_s == 0  # outputs are kept until asked
    for bad in (60, 31 * DAY):
        with pytest.raises(pydantic.ValidationError):
            Settings(files_output_expires_after_s=bad)
    manifest = build_manifest("b1", endpoint="/v1/completions", request_count=1)
    assert with_default_expiry(manifest, 0) is manifest
    defaulted = with_default_expiry(manifest, 2 * DAY)
    assert defaulted.output_expires_after == ExpiresAfter(anchor="created_at", seconds=2 * DAY)
    own = manifest.model_copy(
        update={"output_expires_after": ExpiresAfter(anchor="created_at", seconds=3600)}
    )
    assert with_default_expiry(own, 2 * DAY) is own
