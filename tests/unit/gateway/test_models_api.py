"""``/v1/models`` lists what live workers serve, in OpenAI's shape; routing by model, a batch
naming a model nobody serves fails at creation with ``model_not_found``, and a batch of
several models is refused unless allowed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai.types
import pytest
from fastapi.testclient import TestClient

from llm_stream.files.store import LocalFileStore
from llm_stream.gateway.app import create_app
from llm_stream.settings import Settings
from tests.gateway_support import FakeBatchStream, chat_line, jsonl, upload

CHAT = "/v1/chat/completions"


def test_the_models_served_now_are_listed_once_each_with_their_oldest_start(
    client: TestClient, stream: FakeBatchStream
) -> None:
    stream.announce("small", started_at=1_700_000_500)
    stream.announce("small", "small-alias", started_at=1_700_000_100)
    stream.announce("org/large", started_at=1_700_000_900)
    response = client.get("/v1/models")
    assert response.status_code == 200
    models = [openai.types.Model.model_validate(model) for model in response.json()["data"]]
    assert [(model.id, model.created, model.object) for model in models] == [
        ("org/large", 1_700_000_900, "model"),
        ("small", 1_700_000_100, "model"),
        ("small-alias", 1_700_000_100, "model"),
    ]
    assert response.json()["object"] == "list"


def test_a_model_is_retrieved_by_name_slashes_included(
    client: TestClient, stream: FakeBatchStream
) -> None:
    stream.announce("org/large")
    found = client.get("/v1/models/org/large")
    assert found.status_code == 200
    assert openai.types.Model.model_validate(found.json()).id == "org/large"
    missing = client.get("/v1/models/org/other")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    assert missing.json()["error"]["param"] == "model"


def test_no_workers_no_models(client: TestClient) -> None:
    assert client.get("/v1/models").json() == {"object": "list", "data": []}


@pytest.fixture
def routing(tmp_path: Path) -> Settings:
    return Settings(output_dir=tmp_path / "batches", route_by_model=True)


def _gateway(settings: Settings, stream: FakeBatchStream) -> Iterator[TestClient]:
    store = LocalFileStore(settings.output_dir)
    with TestClient(create_app(settings, store=store, stream=stream)) as client:
        yield client


def _create(client: TestClient, lines: list[dict[str, Any]]) -> dict[str, Any]:
    uploaded = upload(client, jsonl(lines))
    body = {"input_file_id": uploaded["id"], "endpoint": CHAT, "completion_window": "24h"}
    response = client.post("/v1/batches", json=body)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def test_routing_by_model_a_batch_for_an_unserved_model_fails_at_once(
    routing: Settings, stream: FakeBatchStream
) -> None:
    stream.announce("small")
    for client in _gateway(routing, stream):
        batch = _create(client, [chat_line("a", model="gone"), chat_line("b", model="gone")])
    assert batch["status"] == "failed"
    assert batch["errors"]["data"] == [
        {
            "code": "model_not_found",
            "message": "The model `gone` does not exist or no worker serves it now.",
            "param": "body.model",
            "line": 1,
        }
    ]
    assert stream.submitted == {}


def test_routing_by_model_a_served_model_is_submitted(
    routing: Settings, stream: FakeBatchStream
) -> None:
    stream.announce("small")
    for client in _gateway(routing, stream):
        batch = _create(client, [chat_line("a", model="small")])
    assert batch["status"] == "validating"
    assert list(stream.submitted) == [batch["id"]]


def test_several_models_in_one_batch_when_allowed_are_all_checked_and_recorded(
    routing: Settings, stream: FakeBatchStream
) -> None:
    settings = routing.with_overrides(batch_allow_mixed_models=True)
    stream.announce("small")
    stream.announce("large")
    lines = [chat_line("a", model="small"), chat_line("b", model="large")]
    for client in _gateway(settings, stream):
        batch = _create(client, lines)
        refused = _create(client, [*lines, chat_line("c", model="gone")])
    assert batch["status"] == "validating"
    assert stream.manifests[batch["id"]].models == ["large", "small"]
    assert refused["status"] == "failed"
    assert [error["code"] for error in refused["errors"]["data"]] == ["model_not_found"]
    assert refused["errors"]["data"][0]["line"] == 3


def test_several_models_are_refused_unless_allowed(
    routing: Settings, stream: FakeBatchStream
) -> None:
    stream.announce("small")
    stream.announce("large")
    lines = [chat_line("a", model="small"), chat_line("b", model="large")]
    for client in _gateway(routing, stream):
        batch = _create(client, lines)
    assert batch["status"] == "failed"
    [error] = batch["errors"]["data"]
    assert (error["code"], error["line"]) == ("invalid_line", 2)
    assert "differs from the batch's 'small'" in error["message"]
