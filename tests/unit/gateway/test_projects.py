"""Projects through the gateway's HTTP API and its web page (no broker): each project's key
sees, lists, downloads, deletes and cancels its own files and batches only, another project's
answered 404 exactly as an unknown id; an admin key sees both; the page shows the signed-in
key's project's batches."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.client.manifests import build_manifest
from llm_stream.files.store import BatchFile, LocalFileStore
from llm_stream.gateway.app import create_app
from llm_stream.gateway.ui_auth import CSRF_COOKIE
from llm_stream.settings import Settings
from tests.gateway_support import FakeBatchStream, chat_line, jsonl

SEARCH = "sk-search-0123456789abcdef012345678"
ADS = "sk-ads-0123456789abcdef0123456789ab"
ADMIN = "sk-admin-0123456789abcdef0123456789"
NOW = 1_800_000_000


@pytest.fixture
def projects_settings(settings: Settings, tmp_path: Path) -> Settings:
    path = tmp_path / "projects.json"
    content = {
        "projects": {"search": {"keys": [SEARCH]}, "ads": {"keys": [ADS]}},
        "admin_keys": [ADMIN],
    }
    path.write_text(json.dumps(content))
    return settings.with_overrides(gateway_projects_file=path)


@pytest.fixture
def app_client(
    projects_settings: Settings, store: LocalFileStore, stream: FakeBatchStream
) -> Iterator[TestClient]:
    with TestClient(create_app(projects_settings, store=store, stream=stream)) as client:
        yield client


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _upload(client: TestClient, key: str) -> str:
    content = jsonl([chat_line("a")])
    response = client.post(
        "/v1/files",
        files={"file": ("in.jsonl", content)},
        data={"purpose": "batch"},
        headers=_as(key),
    )
    assert response.status_code == 200, response.text
    file_id: str = response.json()["id"]
    return file_id


def _asked(file_id: str) -> dict[str, str]:
    return {
        "input_file_id": file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }


def _create(client: TestClient, key: str, file_id: str) -> dict[str, Any]:
    asked = {
        "input_file_id": file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    response = client.post("/v1/batches", json=asked, headers=_as(key))
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def _ids(response: Any) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["data"]}


def _unknown(response: Any, kind: str, object_id: str) -> None:
    """Answered exactly as an id that names nothing."""
    assert response.status_code == 404, response.text
    assert response.json()["error"]["message"] == f"No such {kind} object: {object_id}"


def test_each_project_sees_only_its_own_files(app_client: TestClient) -> None:
    search, ads = _upload(app_client, SEARCH), _upload(app_client, ADS)
    assert _ids(app_client.get("/v1/files", headers=_as(SEARCH))) == {search}
    assert _ids(app_client.get("/v1/files", headers=_as(ADS))) == {ads}
    assert _ids(app_client.get("/v1/files", headers=_as(ADMIN))) == {search, ads}

    for path in (f"/v1/files/{ads}", f"/v1/files/{ads}/content"):
        _unknown(app_client.get(path, headers=_as(SEARCH)), "File", ads)
        assert app_client.get(path, headers=_as(ADMIN)).status_code == 200
    assert app_client.get(f"/v1/files/{search}/content", headers=_as(SEARCH)).status_code == 200
    after = app_client.get("/v1/files", params={"after": ads}, headers=_as(SEARCH))
    assert after.status_code == 404  # a place in another project's list is no place
    _unknown(app_client.delete(f"/v1/files/{ads}", headers=_as(SEARCH)), "File", ads)
    assert app_client.get(f"/v1/files/{ads}", headers=_as(ADS)).status_code == 200  # still there
    assert app_client.delete(f"/v1/files/{ads}", headers=_as(ADS)).json()["deleted"] is True


def test_each_project_sees_only_its_own_batches(
    app_client: TestClient, stream: FakeBatchStream
) -> None:
    search = _create(app_client, SEARCH, _upload(app_client, SEARCH))["id"]
    ads_file = _upload(app_client, ADS)
    ads = _create(app_client, ADS, ads_file)["id"]
    assert stream.objects[search].project == "search"
    assert _ids(app_client.get("/v1/batches", headers=_as(SEARCH))) == {search}
    assert _ids(app_client.get("/v1/batches", headers=_as(ADS))) == {ads}
    assert _ids(app_client.get("/v1/batches", headers=_as(ADMIN))) == {search, ads}
    assert "project" not in app_client.get(f"/v1/batches/{search}", headers=_as(SEARCH)).json()

    _unknown(app_client.get(f"/v1/batches/{ads}", headers=_as(SEARCH)), "Batch", ads)
    _unknown(app_client.post(f"/v1/batches/{ads}/cancel", headers=_as(SEARCH)), "Batch", ads)
    assert stream.objects[ads].status is BatchStatus.VALIDATING  # nothing was asked
    after = app_client.get("/v1/batches", params={"after": ads}, headers=_as(SEARCH))
    assert after.status_code == 404

    # Another project's file cannot be a batch's input.
    asked = {
        "input_file_id": ads_file,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    refused = app_client.post("/v1/batches", json=asked, headers=_as(SEARCH))
    _unknown(refused, "File", ads_file)

    cancelled = app_client.post(f"/v1/batches/{ads}/cancel", headers=_as(ADMIN))
    assert cancelled.json()["status"] == "cancelling"
    assert app_client.post(f"/v1/batches/{search}/cancel", headers=_as(SEARCH)).status_code == 200


def test_a_batchs_output_files_belong_to_its_project(
    app_client: TestClient, store: LocalFileStore, stream: FakeBatchStream
) -> None:
    manifest = build_manifest("batch_ads", endpoint="/v1/completions", request_count=1)
    manifest = manifest.model_copy(update={"project": "ads", "created_at": NOW})
    output = store.write("batch_ads", BatchFile.OUTPUT, [b'{"custom_id": "a"}\n'])
    final = batch_object(
        manifest,
        BatchStatus.COMPLETED,
        completed=1,
        reached_at={BatchStatus.COMPLETED: NOW},
        output_file_id=output,
    )
    store.write("batch_ads", BatchFile.BATCH, [final.model_dump_json().encode()])
    stream.objects["batch_ads"] = final

    assert _ids(app_client.get("/v1/files", headers=_as(ADS))) == {output}
    assert _ids(app_client.get("/v1/files", headers=_as(SEARCH))) == set()
    assert _ids(app_client.get("/v1/files", headers=_as(ADMIN))) == {output}
    assert app_client.get(f"/v1/files/{output}/content", headers=_as(ADS)).content == (
        b'{"custom_id": "a"}\n'
    )
    _unknown(app_client.get(f"/v1/files/{output}/content", headers=_as(SEARCH)), "File", output)


def test_requests_are_counted_by_the_keys_project(app_client: TestClient) -> None:
    def count() -> float:
        sample = "llm_stream_gateway_project_requests_total"
        return REGISTRY.get_sample_value(sample, {"project": "search"}) or 0.0

    before = count()
    app_client.get("/v1/files", headers=_as(SEARCH))
    app_client.get("/v1/files", headers=_as(ADS))
    assert count() == before + 1


def _log_in(client: TestClient, key: str) -> None:
    html = client.get("/ui/login").text
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found is not None
    response = client.post(
        "/ui/login",
        data={"api_key": key, "csrf_token": found.group(1), "next": "/ui"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert client.cookies.get(CSRF_COOKIE) == found.group(1)


def test_the_page_shows_the_signed_in_projects_batches_only(
    app_client: TestClient, stream: FakeBatchStream
) -> None:
    stream.add("batch_of_search", BatchStatus.IN_PROGRESS, NOW, project="search")
    stream.add("batch_of_ads", BatchStatus.IN_PROGRESS, NOW, project="ads")
    _log_in(app_client, SEARCH)
    page = app_client.get("/ui").text
    assert "batch_of_search" in page
    assert "batch_of_ads" not in page
    assert app_client.get("/ui/batches/batch_of_ads").status_code == 404
    polled = app_client.get("/ui/progress", params={"id": ["batch_of_ads", "batch_of_search"]})
    assert [shown["id"] for shown in polled.json()["batches"]] == ["batch_of_search"]

    app_client.cookies.clear()
    _log_in(app_client, ADMIN)
    page = app_client.get("/ui").text
    assert "batch_of_search" in page
    assert "batch_of_ads" in page
