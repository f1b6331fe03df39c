"""``GET /v1/batches/{id}/output`` and the page's "Results so far": a running batch's lines from
the results topic in OpenAI's batch line shape, paged by the cursor the last page gave, only for
the batch's own project; a stream that cannot read them is a 503 and leaves the page standing."""

from __future__ import annotations

import json
from http import HTTPStatus
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llm_stream.batch.status import BatchStatus
from llm_stream.contracts import ErrorData, ResponseData, ResultMessage
from llm_stream.files.store import LocalFileStore
from llm_stream.gateway.app import create_app
from llm_stream.gateway.errors import GatewayError
from llm_stream.kafka.result_scan import ResultsPage
from llm_stream.settings import Settings
from tests.gateway_support import FakeBatchStream

NOW = 1_800_000_000
SEARCH = "sk-search-0123456789abcdef012345678"
ADS = "sk-ads-0123456789abcdef0123456789ab"


def _result(batch_id: str, number: int) -> ResultMessage:
    if number % 5 == 4:  # every fifth an error line
        error = ErrorData(code="invalid_request_error", message=f"bad line {number}")
        return ResultMessage(
            batch_id=batch_id,
            id=f"r-{number}",
            custom_id=f"c-{number}",
            response=None,
            error=error,
        )
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": f"a{number}"}}]}
    response = ResponseData(status_code=200, request_id=f"req-{number}", body=body)
    return ResultMessage(
        batch_id=batch_id, id=f"r-{number}", custom_id=f"c-{number}", response=response
    )


def test_a_running_batchs_lines_are_paged_by_cursor_in_openais_line_shape(
    client: TestClient, stream: FakeBatchStream
) -> None:
    stream.add("batch_run", BatchStatus.IN_PROGRESS, NOW)
    stream.results["batch_run"] = [_result("batch_run", number) for number in range(25)]
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params = {"limit": 10} | ({"after": after} if after else {})
        page = client.get("/v1/batches/batch_run/output", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        pages += 1
        for line in body["data"]:
            # the line a file holds (OpenAI's keys), not the topic's record
            assert set(line) == {"id", "custom_id", "response", "error"}
        seen += [line["custom_id"] for line in body["data"]]
        assert body["object"] == "list"
        if body["data"]:
            assert (body["first_id"], body["last_id"]) == (
                body["data"][0]["id"],
                body["data"][-1]["id"],
            )
        after = body["next_after"]
        if not body["has_more"]:
            break
    assert seen == [f"c-{number}" for number in range(25)]
    assert pages == 3
    errors = client.get("/v1/batches/batch_run/output", params={"limit": 5}).json()["data"]
    assert errors[4]["error"] == {"code": "invalid_request_error", "message": "bad line 4"}
    assert errors[4]["response"] is None
    # The last cursor stays valid: nothing new yet, and later lines are found from it.
    assert client.get("/v1/batches/batch_run/output", params={"after": after}).json()["data"] == []
    stream.results["batch_run"].append(_result("batch_run", 25))
    later = client.get("/v1/batches/batch_run/output", params={"after": after}).json()
    assert [line["custom_id"] for line in later["data"]] == ["c-25"]


@pytest.mark.parametrize(
    "after", ["c-3", "offset-", "offset--1", "offset-1e3", "offset-٣", "offset-" + "9" * 20]
)
def test_a_cursor_it_did_not_give_is_400_naming_after(
    client: TestClient, stream: FakeBatchStream, after: str
) -> None:
    stream.add("batch_run", BatchStatus.IN_PROGRESS, NOW)
    response = client.get("/v1/batches/batch_run/output", params={"after": after})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "after"


def test_limits_and_unknown_batches(client: TestClient, stream: FakeBatchStream) -> None:
    stream.add("batch_run", BatchStatus.IN_PROGRESS, NOW)
    assert client.get("/v1/batches/batch_run/output", params={"limit": 0}).status_code == 400
    assert client.get("/v1/batches/batch_run/output", params={"limit": 1001}).status_code == 400
    missing = client.get("/v1/batches/batch_nope/output")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "No such Batch object: batch_nope"


def test_another_projects_batch_is_unknown(
    settings: Settings, store: LocalFileStore, stream: FakeBatchStream, tmp_path: Path
) -> None:
    path = tmp_path / "projects.json"
    path.write_text(
        json.dumps({"projects": {"search": {"keys": [SEARCH]}, "ads": {"keys": [ADS]}}})
    )
    stream.add("batch_ads", BatchStatus.IN_PROGRESS, NOW, project="ads")
    stream.results["batch_ads"] = [_result("batch_ads", 0)]
    with TestClient(
        create_app(settings.with_overrides(gateway_projects_file=path), store=store, stream=stream)
    ) as client:
        other = client.get(
            "/v1/batches/batch_ads/output", headers={"Authorization": f"Bearer {SEARCH}"}
        )
        own = client.get("/v1/batches/batch_ads/output", headers={"Authorization": f"Bearer {ADS}"})
    assert other.status_code == 404
    assert other.json()["error"]["message"] == "No such Batch object: batch_ads"
    assert [line["custom_id"] for line in own.json()["data"]] == ["c-0"]


def test_the_page_shows_a_running_batchs_results_so_far(
    client: TestClient, stream: FakeBatchStream
) -> None:
    stream.add("batch_run", BatchStatus.IN_PROGRESS, NOW)
    stream.add("batch_quiet", BatchStatus.IN_PROGRESS, NOW)
    stream.results["batch_run"] = [_result("batch_run", number) for number in range(3)]
    html = client.get("/ui/batches/batch_run").text
    assert 'id="so-far"' in html
    assert "The first 3 lines answered" in html
    assert ">c-0<" in html
    assert ">c-2<" in html
    assert "a1" in html
    assert 'id="so-far"' not in client.get("/ui/batches/batch_quiet").text


def test_a_stream_that_cannot_read_results_is_503_and_the_page_still_stands(
    client: TestClient, stream: FakeBatchStream, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream.add("batch_run", BatchStatus.IN_PROGRESS, NOW)

    async def unreadable(*_: object, **__: object) -> ResultsPage:
        raise GatewayError(HTTPStatus.SERVICE_UNAVAILABLE, "The results topic is not readable")

    monkeypatch.setattr(stream, "results_so_far", unreadable)
    assert client.get("/v1/batches/batch_run/output").status_code == 503
    page = client.get("/ui/batches/batch_run")
    assert page.status_code == 200
    assert "Results so far: The results topic is not readable" in page.text
    assert 'href="/ui/batches/batch_run/cancel"' in page.text
