"""``POST /v1/batches/{id}/resume``: an admin's call (403 for a project's key), 404 for a batch
the key cannot see, 400 with the reason when the batch cannot be resumed, else the counts."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from llm_stream.batch.status import BatchStatus
from llm_stream.files.store import LocalFileStore
from llm_stream.gateway.app import create_app
from llm_stream.settings import Settings
from tests.gateway_support import FakeBatchStream

SEARCH = "sk-search-0123456789abcdef012345678"
ADMIN = "sk-admin-0123456789abcdef0123456789"
NOW = 1_800_000_000


def test_only_an_admin_resumes_and_gets_the_counts(
    settings: Settings, store: LocalFileStore, stream: FakeBatchStream, tmp_path: Path
) -> None:
    path = tmp_path / "projects.json"
    path.write_text(json.dumps({"projects": {"search": {"keys": [SEARCH]}}, "admin_keys": [ADMIN]}))
    stream.add("batch_stuck", BatchStatus.IN_PROGRESS, NOW, project="search")
    app = create_app(
        settings.with_overrides(gateway_projects_file=path), store=store, stream=stream
    )
    with TestClient(app) as client:
        as_search = {"Authorization": f"Bearer {SEARCH}"}
        as_admin = {"Authorization": f"Bearer {ADMIN}"}
        refused = client.post("/v1/batches/batch_stuck/resume", headers=as_search)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "permission_denied"
        assert stream.resumed_ids == []

        resumed = client.post("/v1/batches/batch_stuck/resume", headers=as_admin)
        assert resumed.status_code == 200, resumed.text
        assert resumed.json() == {
            "id": "batch_stuck",
            "object": "batch.resume",
            "republished": 3,
            "answered": 7,
        }
        assert stream.resumed_ids == ["batch_stuck"]
        assert client.post("/v1/batches/batch_nope/resume", headers=as_admin).status_code == 404

        stream.refuse = "batch batch_stuck is completed: there is nothing to resume"
        ended = client.post("/v1/batches/batch_stuck/resume", headers=as_admin)
        assert ended.status_code == 400
        assert ended.json()["error"]["message"] == stream.refuse
        assert ended.json()["error"]["param"] == "batch_id"
