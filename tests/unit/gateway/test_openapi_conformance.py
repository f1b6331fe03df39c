"""The OpenAPI document tells the truth: schemathesis generates requests for every operation
from ``/openapi.json`` (valid ones and broken ones, alone and chained) and checks each answer
against the document; and every error a route answers is documented in OpenAI's shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from schemathesis.engine import events, from_schema

from llm_stream.contracts import completion_window_seconds
from llm_stream.files.store import LocalFileStore
from llm_stream.gateway.app import create_app
from llm_stream.settings import Settings
from tests.gateway_support import FakeBatchStream

KEY = "sk-conformance-key-0123456789abcdef"
#: The longest window the document's pattern allows. The deployment's own limit
#: (batch_max_completion_window_s) is a setting the document states in words, not in the
#: pattern: lifted here, so that every window the pattern allows is one the gateway takes.
LONGEST_WINDOW_S = completion_window_seconds("9999999d")
OPERATIONS = {
    "POST /v1/files",
    "GET /v1/files",
    "GET /v1/files/{file_id}",
    "DELETE /v1/files/{file_id}",
    "GET /v1/files/{file_id}/content",
    "POST /v1/batches",
    "GET /v1/batches",
    "GET /v1/batches/{batch_id}",
    "POST /v1/batches/{batch_id}/cancel",
}


def _run_schemathesis(app: Any) -> tuple[set[str], int, list[str]]:
    """What schemathesis' CLI runs (coverage, fuzzing and stateful phases, every check), in this
    process against the ASGI app: the operations tested, the requests sent, the failures."""
    config = schemathesis.Config.from_dict(
        {
            "headers": {"Authorization": f"Bearer {KEY}"},
            "workers": 1,
            "seed": 20_260_101,
            "generation": {"max-examples": 50, "database": "none"},
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    tested: set[str] = set()
    requests = 0
    failures: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            tested.add(event.recorder.label)
            requests += len(event.recorder.interactions)
            for checks in event.recorder.checks.values():
                failures.extend(
                    f"{event.recorder.label}: {check.name}: {check.failure_info.failure.title}"
                    f"\n{check.failure_info.code_sample}"
                    for check in checks
                    if check.failure_info is not None
                )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            failures.append(repr(event))
    return tested, requests, failures


def test_schemathesis_finds_no_answer_the_document_does_not_describe(tmp_path: Path) -> None:
    settings = Settings(
        output_dir=tmp_path / "batches",
        gateway_api_keys=[SecretStr(KEY)],
        batch_max_completion_window_s=LONGEST_WINDOW_S,
    )
    store = LocalFileStore(settings.output_dir)
    app = create_app(settings, store=store, stream=FakeBatchStream())
    tested, requests, failures = _run_schemathesis(app)
    assert failures == []
    assert tested >= OPERATIONS
    assert requests > 500  # generated requests, not a run that skipped its operations


def test_every_error_a_route_answers_is_documented_in_openais_shape(
    settings: Settings, store: LocalFileStore
) -> None:
    with TestClient(create_app(settings, store=store, stream=FakeBatchStream())) as client:
        document = client.get("/openapi.json").json()
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            errors = {
                code: answer for code, answer in operation["responses"].items() if code >= "4"
            }
            assert {"401", "413", "429", "500"} <= set(errors), (method, path)
            assert "422" not in errors, (method, path)  # FastAPI's own, never answered here
            for answer in errors.values():
                assert answer["content"]["application/json"]["schema"] == error_body
    assert "Retry-After" in document["paths"]["/v1/files"]["get"]["responses"]["429"]["headers"]
    detail = document["components"]["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"message", "type", "param", "code"}
    upload = document["components"]["schemas"]["Body_create_file_v1_files_post"]
    assert set(upload["required"]) == {"file", "purpose"}
    assert "HTTPValidationError" not in document["components"]["schemas"]
