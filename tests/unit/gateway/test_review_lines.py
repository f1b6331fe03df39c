"""``GET /v1/batches/{id}/review`` and the page's review view: each line says whether its
answer validates against its schema (the request's own, else the batch metadata's named one),
a reviewer's correction is what is checked, and a schema name that names none is said, not a
crash."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from llm_stream.batch.status import BatchStatus
from llm_stream.files.records import new_upload_id
from llm_stream.files.store import BatchFile, LocalFileStore
from llm_stream.gateway.app import create_app
from llm_stream.settings import Settings
from tests.gateway_support import FakeBatchStream

NOW = 1_800_000_000
LABELS = {
    "type": "object",
    "properties": {"label": {"enum": ["spam", "ham"]}},
    "required": ["label"],
}
SCORE = {"type": "object", "required": ["score"]}
#: custom_id: (the request carries the score schema itself, the model's answer)
LINES = {
    "c-valid": (False, '{"label": "spam"}'),
    "c-enum": (False, '{"label": "eggs"}'),
    "c-prose": (False, "Spam, I think."),
    "c-own": (True, '{"score": 3}'),
}


def _request(custom_id: str, own_schema: bool) -> bytes:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": custom_id}]}
    if own_schema:
        wrapper = {"name": "score", "schema": SCORE}
        body["response_format"] = {"type": "json_schema", "json_schema": wrapper}
    line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions"}
    return orjson.dumps({**line, "body": body}) + b"\n"


def _output(custom_id: str, answer: str) -> bytes:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]}
    response = {"status_code": 200, "request_id": f"req-{custom_id}", "body": body}
    return orjson.dumps({"id": f"r-{custom_id}", "custom_id": custom_id, "response": response})


def _finished(
    stream: FakeBatchStream, store: LocalFileStore, batch_id: str, metadata: dict[str, str]
) -> None:
    upload = new_upload_id()
    requests = [_request(one, own) for one, (own, _answer) in LINES.items()]
    store.write_upload(upload, requests, filename="in.jsonl", created_at=NOW)
    store.link_input(batch_id, upload)
    outputs = [_output(one, answer) + b"\n" for one, (_own, answer) in LINES.items()]
    output = store.write(batch_id, BatchFile.OUTPUT, outputs)
    stream.add(batch_id, BatchStatus.COMPLETED, NOW, completed=len(LINES), output_file_id=output)
    stream.objects[batch_id] = stream.objects[batch_id].model_copy(update={"metadata": metadata})


@pytest.fixture
def schemas_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "schemas"
    folder.mkdir()
    (folder / "labels.json").write_text(json.dumps(LABELS))
    return folder


@pytest.fixture
def client(
    settings: Settings, store: LocalFileStore, stream: FakeBatchStream, schemas_dir: Path
) -> Any:
    app = create_app(settings.with_overrides(schemas_dir=schemas_dir), store=store, stream=stream)
    with TestClient(app) as test_client:
        yield test_client


def _problems(client: TestClient, batch_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/batches/{batch_id}/review")
    assert answer.status_code == 200, answer.text
    return {line["custom_id"]: line["schema_problems"] for line in answer.json()["data"]}


def test_lines_are_checked_against_the_schema_the_metadata_names(
    client: TestClient, stream: FakeBatchStream, store: LocalFileStore
) -> None:
    _finished(stream, store, "batch_named", {"schema": "labels"})
    assert _problems(client, "batch_named") == {
        "c-valid": [],
        "c-enum": ["label: 'eggs' is not one of ['spam', 'ham']"],
        "c-prose": ["the answer is not JSON"],
        "c-own": [],  # its request's own schema wins: {"score": 3} validates against it
    }
    body = client.get("/v1/batches/batch_named/review").json()
    assert body["schema_error"] is None
    assert (body["matched"], body["page"], body["pages"], body["has_more"]) == (4, 1, 1, False)
    assert body["data"][0]["answer"] == '{"label": "spam"}'


def test_a_reviewers_correction_is_what_is_checked(
    client: TestClient, stream: FakeBatchStream, store: LocalFileStore
) -> None:
    _finished(stream, store, "batch_fixed", {"schema": "labels"})
    fixed = {"verdict": "accepted", "corrected": '{"label": "ham"}'}
    assert client.put("/v1/batches/batch_fixed/judgements/c-prose", json=fixed).status_code == 200
    lines = client.get("/v1/batches/batch_fixed/review").json()["data"]
    prose = next(line for line in lines if line["custom_id"] == "c-prose")
    assert prose["schema_problems"] == []
    assert prose["judgement"]["verdict"] == "accepted"


def test_without_a_named_schema_only_lines_with_their_own_are_checked(
    client: TestClient, stream: FakeBatchStream, store: LocalFileStore
) -> None:
    _finished(stream, store, "batch_plain", {"team": "search"})
    assert _problems(client, "batch_plain") == {
        "c-valid": None,
        "c-enum": None,
        "c-prose": None,
        "c-own": [],
    }


def test_an_unknown_schema_name_is_said_and_the_lines_still_shown(
    client: TestClient, stream: FakeBatchStream, store: LocalFileStore
) -> None:
    _finished(stream, store, "batch_unknown", {"schema": "nowhere"})
    body = client.get("/v1/batches/batch_unknown/review").json()
    assert "'nowhere'" in body["schema_error"]
    assert len(body["data"]) == 4
    page = client.get("/ui/batches/batch_unknown").text
    assert 'id="schema-error"' in page
    assert "nowhere" in page


def test_a_batch_without_output_and_an_unknown_batch_are_openai_style_404s(
    client: TestClient, stream: FakeBatchStream
) -> None:
    stream.add("batch_running", BatchStatus.IN_PROGRESS, NOW)
    running = client.get("/v1/batches/batch_running/review")
    assert running.status_code == 404
    assert running.json()["error"]["message"].startswith("Batch batch_running has no output")
    unknown = client.get("/v1/batches/batch_nope/review")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "invalid_request_error"
    bad = client.get("/v1/batches/batch_running/review?page=0")
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "page"


def test_the_page_marks_lines_that_do_not_validate(
    client: TestClient, stream: FakeBatchStream, store: LocalFileStore
) -> None:
    _finished(stream, store, "batch_page", {"schema": "labels"})
    page = client.get("/ui/batches/batch_page").text
    rows = dict(re.findall(r'data-custom-id="([^"]+)".*?data-valid="(true|false)"', page, re.S))
    assert rows == {"c-valid": "true", "c-enum": "false", "c-prose": "false", "c-own": "true"}
    assert "label: &#39;eggs&#39; is not one of" in page
