"""``/v1/batches``: creation (submitted or failed with per-line errors), listing, retrieval and
cancellation, every batch object an ``openai.types.Batch``."""

from __future__ import annotations

from typing import Any

import openai.types
import orjson
import pytest
from fastapi.testclient import TestClient

from llm_stream.batch.status import BatchStatus
from llm_stream.files.store import LocalFileStore
from tests.gateway_support import FakeBatchStream, chat_line, jsonl, upload

CHAT = "/v1/chat/completions"


def _create(client: TestClient, input_file_id: str, **params: Any) -> Any:
    body = {"input_file_id": input_file_id, "endpoint": CHAT, "completion_window": "24h"}
    return client.post("/v1/batches", json={**body, **params})


def _batch(response: Any) -> openai.types.Batch:
    assert response.status_code == 200, response.text
    return openai.types.Batch.model_validate(response.json())


def test_a_valid_file_is_submitted_line_by_line(
    client: TestClient, stream: FakeBatchStream, store: LocalFileStore
) -> None:
    lines = [chat_line("a"), chat_line("b"), chat_line("c")]
    uploaded = upload(client, jsonl(lines) + b"\n")  # a blank line is no request

    batch = _batch(_create(client, uploaded["id"], metadata={"team": "search"}))

    assert (batch.status, batch.endpoint, batch.input_file_id) == (
        "validating",
        CHAT,
        uploaded["id"],
    )
    assert batch.metadata == {"team": "search"}
    assert batch.request_counts is not None
    assert batch.request_counts.total == 3
    assert stream.submitted[batch.id] == lines
    assert stream.published == []
    # Every later read names the upload too, though the status topic cannot.
    assert _batch(client.get(f"/v1/batches/{batch.id}")).input_file_id == uploaded["id"]
    assert store.linked_input(batch.id) == uploaded["id"]


def test_a_file_that_breaks_rules_gives_a_failed_batch_with_an_error_per_line(
    client: TestClient, stream: FakeBatchStream
) -> None:
    content = b"\n".join(
        [
            orjson.dumps(chat_line("a")),
            b"not json",
            orjson.dumps(chat_line("a")),  # duplicate custom_id
            orjson.dumps(chat_line("d", model="other")),
        ]
    )
    uploaded = upload(client, content)

    batch = _batch(_create(client, uploaded["id"]))

    assert batch.status == "failed"
    assert batch.failed_at is not None
    assert batch.request_counts is not None
    assert batch.request_counts.total == 0
    assert batch.input_file_id == uploaded["id"]
    assert batch.errors is not None
    assert batch.errors.object == "list"
    by_line = {error.line: error for error in batch.errors.data or []}
    assert set(by_line) == {2, 3, 4}
    assert "JSON" in (by_line[2].message or "")
    assert "duplicate custom_id" in (by_line[3].message or "")
    assert "model" in (by_line[4].message or "")
    assert stream.submitted == {}
    assert [published.id for published in stream.published] == [batch.id]


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"\n\n", "empty_file"),
        (jsonl([chat_line("a", url="/v1/completions")]), "mismatched_endpoint"),
    ],
)
def test_whole_file_problems_are_batch_errors_without_a_line(
    client: TestClient, content: bytes, code: str
) -> None:
    batch = _batch(_create(client, upload(client, content)["id"]))
    assert batch.status == "failed"
    assert batch.errors is not None
    assert [(error.code, error.line) for error in batch.errors.data or []] == [(code, None)]


def test_more_lines_than_the_setting_allows_fail_the_batch(
    client: TestClient, stream: FakeBatchStream
) -> None:
    from llm_stream.gateway.app import create_app

    gateway = client.app.state.gateway  # type: ignore[attr-defined]
    few = gateway.settings.with_overrides(batch_max_lines=2)
    with TestClient(create_app(few, store=gateway.store, stream=stream)) as limited:
        uploaded = upload(limited, jsonl(chat_line(str(i)) for i in range(3)))
        batch = _batch(_create(limited, uploaded["id"]))
    assert batch.errors is not None
    assert [error.code for error in batch.errors.data or []] == ["too_many_requests"]


def test_a_line_over_the_line_limit_fails_the_batch_naming_that_line(
    client: TestClient, stream: FakeBatchStream
) -> None:
    from llm_stream.gateway.app import create_app

    gateway = client.app.state.gateway  # type: ignore[attr-defined]
    short = gateway.settings.with_overrides(batch_max_line_bytes=2048)
    long_line = orjson.dumps(chat_line("long" + "x" * 5000))
    content = b"\n".join([orjson.dumps(chat_line("a")), long_line, orjson.dumps(chat_line("b"))])
    with TestClient(create_app(short, store=gateway.store, stream=stream)) as limited:
        batch = _batch(_create(limited, upload(limited, content)["id"]))
    assert batch.status == "failed"
    assert batch.errors is not None
    assert [(error.code, error.line, error.message) for error in batch.errors.data or []] == [
        (
            "invalid_line",
            2,
            f"the line is {len(long_line)} bytes, over the 2048-byte limit of a request line "
            "(batch_max_line_bytes)",
        )
    ]
    assert stream.submitted == {}


def test_an_endpoint_no_worker_serves_fails_the_batch_at_validation(
    client: TestClient, stream: FakeBatchStream
) -> None:
    """OpenAI's endpoints the service never serves, and one the live workers' models do not,
    fail at once (nothing submitted) rather than waiting to expire; with no live worker, or
    one that has not said, a served endpoint is taken."""
    line = {**chat_line("a"), "url": "/v1/embeddings"}
    line["body"] = {"model": "tiny", "input": "x"}
    uploaded = upload(client, jsonl([line]))

    moderations = _batch(_create(client, uploaded["id"], endpoint="/v1/moderations"))
    assert moderations.status == "failed"
    assert moderations.errors is not None
    assert moderations.errors.data is not None
    first = moderations.errors.data[0]
    assert (first.code, first.param) == ("unsupported_endpoint", "endpoint")
    assert "does not serve /v1/moderations" in (first.message or "")

    assert _batch(_create(client, uploaded["id"], endpoint="/v1/embeddings")).status == (
        "validating"
    )  # no live worker: the batch waits for one
    stream.announce("tiny", endpoints=[CHAT, "/v1/responses"])
    refused = _batch(_create(client, uploaded["id"], endpoint="/v1/embeddings"))
    assert refused.status == "failed"
    assert refused.errors is not None
    assert refused.errors.data is not None
    assert refused.errors.data[0].message == (
        "No live worker serves /v1/embeddings: their models serve /v1/chat/completions, "
        "/v1/responses. Create the batch with one of those endpoints, or start workers whose "
        "model serves this one."
    )
    stream.announce("tiny", endpoints=None)  # a worker still starting
    assert _batch(_create(client, uploaded["id"], endpoint="/v1/embeddings")).status == (
        "validating"
    )
    assert len(stream.submitted) == 2


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"endpoint": "/v1/unknown"}, "endpoint"),
        ({"completion_window": "tomorrow"}, "completion_window"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k" * 65: "v"}}, "metadata"),
        ({"metadata": {"k": "v" * 513}}, "metadata"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    client: TestClient, stream: FakeBatchStream, params: dict[str, Any], param: str
) -> None:
    uploaded = upload(client, jsonl([chat_line("a")]))
    response = _create(client, uploaded["id"], **params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert stream.objects == {}


def test_a_completion_window_over_the_longest_allowed_is_400_naming_it(
    client: TestClient, stream: FakeBatchStream
) -> None:
    uploaded = upload(client, jsonl([chat_line("a")]))
    response = _create(client, uploaded["id"], completion_window="9999999d")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "completion_window",
        "invalid_value",
    )
    assert "longer than 3d" in error["message"]
    assert stream.submitted == {}
    assert stream.published == []
    assert _batch(_create(client, uploaded["id"], completion_window="72h")).status == "validating"


def test_a_missing_input_file_is_404_and_a_missing_parameter_400(client: TestClient) -> None:
    missing = _create(client, "file-0123456789abcdef0123456789abcdef")
    assert missing.status_code == 404
    assert missing.json()["error"]["param"] == "input_file_id"
    no_file = client.post("/v1/batches", json={"endpoint": CHAT, "completion_window": "24h"})
    assert no_file.status_code == 400
    assert no_file.json()["error"]["code"] == "missing_required_parameter"
    not_json = client.post(
        "/v1/batches", content=b"{", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "invalid_json"


def test_batches_are_listed_newest_first_in_openai_pages(
    client: TestClient, stream: FakeBatchStream
) -> None:
    for index in range(5):
        stream.add(f"b{index}", BatchStatus.IN_PROGRESS, created_at=1_700_000_000 + index)

    first = client.get("/v1/batches", params={"limit": 2}).json()
    assert [openai.types.Batch.model_validate(b).id for b in first["data"]] == ["b4", "b3"]
    assert (first["object"], first["first_id"], first["last_id"], first["has_more"]) == (
        "list",
        "b4",
        "b3",
        True,
    )
    rest = client.get("/v1/batches", params={"after": "b3"}).json()
    assert [batch["id"] for batch in rest["data"]] == ["b2", "b1", "b0"]
    assert rest["has_more"] is False
    for batch in rest["data"]:  # made elsewhere: their input is the status topic's id
        assert batch["input_file_id"] == f"file-{batch['id']}-input"
    assert client.get("/v1/batches", params={"limit": 101}).status_code == 400
    assert client.get("/v1/batches", params={"after": "nope"}).status_code == 404


def test_retrieve_and_cancel(client: TestClient, stream: FakeBatchStream) -> None:
    stream.add("b_run", BatchStatus.IN_PROGRESS, created_at=1_700_000_000)
    stream.add(
        "b_done",
        BatchStatus.COMPLETED,
        created_at=1_700_000_000,
        output_file_id="file-b_done-output",
    )

    assert _batch(client.get("/v1/batches/b_run")).status == "in_progress"
    cancelled = _batch(client.post("/v1/batches/b_run/cancel"))
    assert (cancelled.status, cancelled.cancelling_at is not None) == ("cancelling", True)
    assert _batch(client.get("/v1/batches/b_run")).status == "cancelling"
    assert _batch(client.post("/v1/batches/b_done/cancel")).status == "completed"
    for path in ("/v1/batches/nothing", "/v1/batches/..%2Fx"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert client.post("/v1/batches/nothing/cancel").status_code == 404


def test_creating_a_batch_continues_the_callers_trace_into_the_submission(
    client: TestClient, stream: FakeBatchStream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from llm_stream.ops import telemetry

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "tracer", lambda: provider.get_tracer("test"))
    seen: list[int] = []
    real_submit = stream.submit

    async def submit(*args: Any, **kwargs: Any) -> None:
        seen.append(trace.get_current_span().get_span_context().trace_id)
        await real_submit(*args, **kwargs)

    monkeypatch.setattr(stream, "submit", submit)
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    uploaded = upload(client, jsonl([chat_line("a")]))
    body = {"input_file_id": uploaded["id"], "endpoint": CHAT, "completion_window": "24h"}
    headers = {"traceparent": f"00-{trace_id}-{parent}-01", "x-request-id": "client-req-7"}
    assert client.post("/v1/batches", json=body, headers=headers).status_code == 200
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "POST /v1/batches"]
    assert span.attributes is not None
    assert span.attributes["http.request.header.x-request-id"] == ("client-req-7",)
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == parent
    assert [format(t, "032x") for t in seen] == [trace_id]
