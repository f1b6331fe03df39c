"""``/v1/batches/{id}/judgements``: a reviewer's PUT is read back by the GET, the last
judgement of a line wins, bad verdicts are OpenAI-style 400s and another project's batch is
unknown."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from llm_stream.batch.status import BatchStatus
from llm_stream.files.store import LocalFileStore
from llm_stream.gateway.app import create_app
from llm_stream.settings import Settings
from tests.gateway_support import FakeBatchStream

NOW = 1_800_000_000
SEARCH = "sk-search-0123456789abcdef012345678"
ADS = "sk-ads-0123456789abcdef0123456789ab"


def test_judgements_are_put_and_listed(client: TestClient, stream: FakeBatchStream) -> None:
    stream.add("batch_rev", BatchStatus.COMPLETED, NOW)
    assert client.get("/v1/batches/batch_rev/judgements").json()["data"] == []
    first = client.put("/v1/batches/batch_rev/judgements/c-2", json={"verdict": "rejected"})
    assert first.status_code == 200
    assert first.json()["object"] == "batch.judgement"
    client.put(
        "/v1/batches/batch_rev/judgements/c-2",
        json={"verdict": "accepted", "corrected": "Better.", "note": "fixed"},
    )
    client.put("/v1/batches/batch_rev/judgements/c-1", json={"verdict": "gold"})
    listed = client.get("/v1/batches/batch_rev/judgements").json()
    assert [(j["custom_id"], j["verdict"]) for j in listed["data"]] == [
        ("c-1", "gold"),
        ("c-2", "accepted"),
    ]
    assert listed["data"][1]["corrected"] == "Better."
    assert listed["first_id"] == "c-1"
    assert listed["last_id"] == "c-2"


def test_judgements_are_listed_a_page_at_a_time(
    client: TestClient, stream: FakeBatchStream
) -> None:
    stream.add("batch_paged", BatchStatus.COMPLETED, NOW)
    for number in range(5):
        client.put(f"/v1/batches/batch_paged/judgements/c-{number}", json={"verdict": "gold"})
    first = client.get("/v1/batches/batch_paged/judgements?limit=2").json()
    assert [j["custom_id"] for j in first["data"]] == ["c-0", "c-1"]
    assert first["has_more"] is True
    rest = client.get(f"/v1/batches/batch_paged/judgements?after={first['last_id']}&limit=3")
    assert [j["custom_id"] for j in rest.json()["data"]] == ["c-2", "c-3", "c-4"]
    assert rest.json()["has_more"] is False
    too_many = client.get("/v1/batches/batch_paged/judgements?limit=1001")
    assert too_many.status_code == 400
    assert too_many.json()["error"]["param"] == "limit"


def test_a_bad_verdict_and_an_unknown_batch(client: TestClient, stream: FakeBatchStream) -> None:
    stream.add("batch_rev", BatchStatus.COMPLETED, NOW)
    bad = client.put("/v1/batches/batch_rev/judgements/c-1", json={"verdict": "maybe"})
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    missing = client.put("/v1/batches/batch_nope/judgements/c-1", json={"verdict": "gold"})
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "No such Batch object: batch_nope"


def test_another_projects_batch_cannot_be_judged(
    settings: Settings, store: LocalFileStore, stream: FakeBatchStream, tmp_path: Path
) -> None:
    path = tmp_path / "projects.json"
    path.write_text(
        json.dumps({"projects": {"search": {"keys": [SEARCH]}, "ads": {"keys": [ADS]}}})
    )
    stream.add("batch_ads", BatchStatus.COMPLETED, NOW, project="ads")
    app = create_app(
        settings.with_overrides(gateway_projects_file=path), store=store, stream=stream
    )
    with TestClient(app) as client:
        other = client.put(
            "/v1/batches/batch_ads/judgements/c-0",
            json={"verdict": "gold"},
            headers={"Authorization": f"Bearer {SEARCH}"},
        )
        own = client.put(
            "/v1/batches/batch_ads/judgements/c-0",
            json={"verdict": "gold"},
            headers={"Authorization": f"Bearer {ADS}"},
        )
    assert other.status_code == 404
    assert own.status_code == 200
    assert own.json()["reviewer"]
