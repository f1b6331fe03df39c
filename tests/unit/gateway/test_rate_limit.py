"""Requests per minute (no broker): a key past its limit is answered OpenAI's 429 with
``Retry-After`` and ``x-ratelimit-*`` headers, which every answer under a limit carries; keys
are counted apart, a project may have its own limit; the login form is limited per address;
and two replicas' counts add up (``SharedCounts``), so a limit holds across them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from limits import RateLimitItemPerMinute
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from pydantic import SecretStr

from llm_stream.files.store import LocalFileStore
from llm_stream.gateway.app import create_app
from llm_stream.gateway.rate_counts import SharedCounts
from llm_stream.gateway.rate_limit import RateDecision
from llm_stream.settings import Settings
from tests.gateway_support import FakeBatchStream

FIRST = "sk-first-0123456789abcdef0123456789"
SECOND = "sk-second-0123456789abcdef012345678"
SLOW = "sk-slow-0123456789abcdef01234567890"


@pytest.fixture
def limited(
    settings: Settings, store: LocalFileStore, stream: FakeBatchStream, tmp_path: Path
) -> Iterator[TestClient]:
    path = tmp_path / "projects.json"
    projects = {"slow": {"keys": [SLOW], "requests_per_minute": 1}}
    path.write_text(json.dumps({"projects": projects, "admin_keys": [FIRST, SECOND]}))
    limited = settings.with_overrides(
        gateway_projects_file=path, gateway_requests_per_minute=3, gateway_logins_per_minute=2
    )
    with TestClient(create_app(limited, store=store, stream=stream)) as client:
        yield client


def _get(client: TestClient, key: str) -> Response:
    return client.get("/v1/batches", headers={"Authorization": f"Bearer {key}"})


def test_a_key_past_its_limit_gets_openais_429_with_the_headers(limited: TestClient) -> None:
    answers = [_get(limited, FIRST) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    ok, refused = answers[0], answers[3]
    assert ok.headers["x-ratelimit-limit-requests"] == "3"
    assert ok.headers["x-ratelimit-remaining-requests"] == "2"
    assert re.fullmatch(r"(\d+m)?\d+s", ok.headers["x-ratelimit-reset-requests"])
    assert "retry-after" not in ok.headers
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["type"] == "requests"
    assert error["message"].startswith("Rate limit reached for requests. Limit: 3 / min.")


def test_keys_are_counted_apart_and_a_project_may_set_its_own(limited: TestClient) -> None:
    for _ in range(3):
        assert _get(limited, FIRST).status_code == 200
    assert _get(limited, SECOND).status_code == 200
    assert _get(limited, SLOW).status_code == 200
    assert _get(limited, SLOW).status_code == 429


def test_ops_endpoints_and_wrong_keys_are_not_counted_against_a_key(limited: TestClient) -> None:
    for _ in range(5):
        assert limited.get("/healthz").status_code == 200
    assert _get(limited, "sk-wrong-0123456789abcdef0123456789").status_code == 401
    assert _get(limited, FIRST).headers["x-ratelimit-remaining-requests"] == "2"


def test_no_limit_set_means_no_headers(client: TestClient) -> None:
    answer = client.get("/v1/batches")
    assert answer.status_code == 200
    assert "x-ratelimit-limit-requests" not in answer.headers


def test_the_login_form_is_limited_per_address(
    settings: Settings, store: LocalFileStore, stream: FakeBatchStream
) -> None:
    keyed = settings.with_overrides(
        gateway_api_keys=[SecretStr(FIRST)], gateway_logins_per_minute=2
    )
    with TestClient(create_app(keyed, store=store, stream=stream)) as client:
        html = client.get("/ui/login").text
        token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
        assert token is not None
        form = {"api_key": FIRST, "csrf_token": token.group(1), "next": "/ui"}
        codes = [
            client.post("/ui/login", data=form, follow_redirects=False).status_code
            for _ in range(3)
        ]
        assert codes == [303, 303, 429]
        held = client.post("/ui/login", data=form, follow_redirects=False)
        assert "Too many sign-in attempts from your address" in held.text
        assert int(held.headers["retry-after"]) >= 1


async def test_two_replicas_counts_add_up_to_one_limit() -> None:
    first, second = SharedCounts(), SharedCounts()
    item = RateLimitItemPerMinute(5)
    at_first = SlidingWindowCounterRateLimiter(first)
    at_second = SlidingWindowCounterRateLimiter(second)
    assert [await at_first.hit(item, "api", "k") for _ in range(3)] == [True] * 3
    for counter, count, expires_at in first.take_changed():
        second.heard("first", counter, count, expires_at)
    assert first.take_changed() == []  # each change is published once
    assert [await at_second.hit(item, "api", "k") for _ in range(3)] == [True, True, False]
    assert await at_second.hit(item, "api", "other key")


async def test_a_replicas_latest_count_replaces_its_earlier_and_expired_ones_lapse() -> None:
    now = [1000.0]
    counts = SharedCounts(clock=lambda: now[0])
    counts.heard("r1", "c", 4, expires_at=1100.0)
    counts.heard("r1", "c", 6, expires_at=1100.0)
    counts.heard("r2", "c", 1, expires_at=1050.0)
    assert counts.peer_count("c") == 7
    now[0] = 1060.0
    assert counts.peer_count("c") == 6
    now[0] = 2000.0
    counts.heard("r3", "d", 1, expires_at=2100.0)  # a report later sweeps what expired
    assert counts.peer_count("c") == 0
    assert counts.peers_held() == 1


def test_reset_times_read_as_openai_writes_them() -> None:
    decision = RateDecision(allowed=False, limit=10, remaining=0, reset_s=61.2)
    assert decision.headers() == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m2s",
        "Retry-After": "62",
    }
    assert RateDecision(True, 10, 9, 0.2).headers()["x-ratelimit-reset-requests"] == "1s"
