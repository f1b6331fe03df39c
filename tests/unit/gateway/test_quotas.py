"""Quotas through the gateway's HTTP API (no broker): a batch past its project's enqueued
tokens or batches in flight for its model is created ``failed`` with OpenAI's error and nothing
submitted; a finished batch frees its room; projects and models are bounded apart; creates of
one project take turns, so two at once never both take the last room."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from llm_stream.batch.status import BatchStatus
from llm_stream.client.status_index import Enqueued
from llm_stream.files.store import LocalFileStore
from llm_stream.gateway.app import create_app
from llm_stream.gateway.limits import Limits, ProjectLimits
from llm_stream.gateway.quotas import QuotaTurns
from llm_stream.settings import Settings
from tests.gateway_support import FakeBatchStream, jsonl

SEARCH = "sk-search-0123456789abcdef012345678"
ADS = "sk-ads-0123456789abcdef0123456789ab"
#: 400 bytes of text: 100 tokens, plus the chat framing (3 + 4) and "user" (1): 108 a line.
TEXT = "x" * 400
LINE_TOKENS = 108


def _line(custom_id: str, model: str = "small") -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": TEXT}]}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


@pytest.fixture
def quota_settings(settings: Settings, tmp_path: Path) -> Settings:
    path = tmp_path / "projects.json"
    projects = {
        "search": {"keys": [SEARCH]},
        "ads": {"keys": [ADS], "models": {"large": {"batches_in_flight": 1}}},
    }
    path.write_text(json.dumps({"projects": projects}))
    # Every project: 250 enqueued tokens per model (two batches of two lines do not fit).
    return settings.with_overrides(gateway_projects_file=path, quota_enqueued_tokens=250)


@pytest.fixture
def app_client(
    quota_settings: Settings, store: LocalFileStore, stream: FakeBatchStream
) -> Iterator[TestClient]:
    with TestClient(create_app(quota_settings, store=store, stream=stream)) as client:
        yield client


def _create(client: TestClient, key: str, *lines: dict[str, Any]) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {key}"}
    uploaded = client.post(
        "/v1/files",
        files={"file": ("in.jsonl", jsonl(lines))},
        data={"purpose": "batch"},
        headers=auth,
    )
    assert uploaded.status_code == 200, uploaded.text
    asked = {
        "input_file_id": uploaded.json()["id"],
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    response = client.post("/v1/batches", json=asked, headers=auth)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def _refusals(project: str, reason: str) -> float:
    found = REGISTRY.get_sample_value(
        "llm_stream_gateway_quota_refusals_total", {"project": project, "reason": reason}
    )
    return found or 0.0


def test_a_batch_past_the_enqueued_tokens_fails_with_openais_error(
    app_client: TestClient, stream: FakeBatchStream
) -> None:
    before = _refusals("search", "token_limit_exceeded")
    first = _create(app_client, SEARCH, _line("a"))
    second = _create(app_client, SEARCH, _line("b"))
    assert first["status"] == second["status"] == "validating"
    assert stream.manifests[first["id"]].input_tokens == {"small": LINE_TOKENS}

    third = _create(app_client, SEARCH, _line("c"))  # 3 x 108 > 250
    assert third["status"] == "failed"
    assert third["errors"]["data"] == [
        {
            "code": "token_limit_exceeded",
            "message": "Enqueued token limit reached for small in project search. Limit: 250 "
            "enqueued tokens. Please try again once some in_progress batches have been "
            "completed.",
            "param": None,
            "line": None,
        }
    ]
    assert third["id"] not in stream.submitted  # nothing reached the requests topic
    assert _refusals("search", "token_limit_exceeded") == before + 1

    # Another project, and another model of the same project, have their own room.
    assert _create(app_client, ADS, _line("d"))["status"] == "validating"
    assert _create(app_client, SEARCH, _line("e", "large"))["status"] == "validating"

    # A finished batch frees its tokens.
    stream.objects[first["id"]] = stream.objects[first["id"]].model_copy(
        update={"status": BatchStatus.COMPLETED}
    )
    assert _create(app_client, SEARCH, _line("f"))["status"] == "validating"


def test_a_batch_larger_than_the_quota_alone_fails(app_client: TestClient) -> None:
    created = _create(app_client, SEARCH, _line("a"), _line("b"), _line("c"))
    assert created["status"] == "failed"
    assert created["errors"]["data"][0]["code"] == "token_limit_exceeded"


def test_batches_in_flight_are_bounded_by_the_projects_own_limit(app_client: TestClient) -> None:
    assert _create(app_client, ADS, _line("a", "large"))["status"] == "validating"
    refused = _create(app_client, ADS, _line("b", "large"))
    assert refused["status"] == "failed"
    assert refused["errors"]["data"][0]["code"] == "batch_limit_exceeded"
    assert "Limit: 1 batches in flight" in refused["errors"]["data"][0]["message"]
    # The search project has no such limit on the large model.
    assert _create(app_client, SEARCH, _line("c", "large"))["status"] == "validating"
    assert _create(app_client, SEARCH, _line("d", "large"))["status"] == "validating"


def test_the_gauges_show_what_each_project_has_queued(app_client: TestClient) -> None:
    _create(app_client, SEARCH, _line("a"))
    _create(app_client, ADS, _line("b"), _line("c"))
    text = app_client.get("/metrics").text
    assert 'llm_stream_gateway_batches_in_flight{model="small",project="search"} 1.0' in text
    assert (
        f'llm_stream_gateway_enqueued_tokens{{model="small",project="ads"}} '
        f"{2.0 * LINE_TOKENS}" in text
    )


def test_limits_resolve_a_models_own_entry_then_every_model_then_the_settings() -> None:
    own = ProjectLimits.model_validate(
        {
            "requests_per_minute": 5,
            "models": {
                "big": {"enqueued_tokens": 10},
                "*": {"enqueued_tokens": 20, "batches_in_flight": 3},
            },
        }
    )
    limits = Limits(
        requests_per_minute=60, enqueued_tokens=100, batches_in_flight=9, projects={"p": own}
    )
    assert limits.quota("p", "big").enqueued_tokens == 10
    assert limits.quota("p", "big").batches_in_flight == 3  # left out: "*"
    assert limits.quota("p", "other").enqueued_tokens == 20
    assert limits.quota("q", "big").enqueued_tokens == 100
    assert limits.quota("q", "big").batches_in_flight == 9
    assert limits.requests_per_minute_of("p") == 5
    assert limits.requests_per_minute_of("q") == 60


class _ParkedStream(FakeBatchStream):
    """Parks each ``enqueued`` read until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[asyncio.Event] = []
        self.queued = Enqueued(0, 0)

    async def enqueued(self, project: str, model: str) -> Enqueued:
        release = asyncio.Event()
        self.reads.append(release)
        await release.wait()
        return self.queued


async def test_two_creates_of_one_project_never_both_take_the_last_room() -> None:
    """Every interleaving of two admits: the second reads the count only after the first
    left its turn (by then its batch is counted), whichever await the first is parked at."""
    stream, turns = _ParkedStream(), QuotaTurns()
    limits = Limits(enqueued_tokens=150)
    outcomes: list[str] = []

    async def create(name: str) -> None:
        async with turns.admit(stream, limits, "p", {"m": 100}) as refused:
            outcomes.append(f"{name}:{'refused' if refused else 'admitted'}")
            await asyncio.sleep(0)  # submitting: the batch is published meanwhile
            if refused is None:
                stream.queued = Enqueued(1, 100)

    first, second = asyncio.create_task(create("a")), asyncio.create_task(create("b"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(stream.reads) == 1  # the second waits for its turn before it reads
    stream.reads[0].set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(stream.reads) == 2
    stream.reads[1].set()
    await asyncio.gather(first, second)
    assert outcomes == ["a:admitted", "b:refused"]


async def test_a_project_without_quotas_takes_no_turn_and_reads_nothing() -> None:
    stream, turns = _ParkedStream(), QuotaTurns()
    async with turns.admit(stream, Limits(), "p", {"m": 10**9}) as refused:
        assert refused is None
    assert stream.reads == []
