from __future__ import annotations

from starlette.testclient import TestClient

from llm_stream.ops import metrics
from llm_stream.ops.server import build_app


async def _ready() -> str | None:
    return None


async def _not_ready() -> str | None:
    return "broker unreachable"


async def _broken() -> str | None:
    raise RuntimeError("boom")


def test_liveness_answers_whatever_readiness_says() -> None:
    client = TestClient(build_app(_not_ready))
    assert client.get("/healthz").status_code == 200


def test_readiness_reports_why_it_is_not_ready() -> None:
    assert TestClient(build_app(_ready)).get("/readyz").status_code == 200
    response = TestClient(build_app(_not_ready)).get("/readyz")
    assert (response.status_code, response.text) == (503, "not ready: broker unreachable\n")
    broken = TestClient(build_app(_broken)).get("/readyz")
    assert broken.status_code == 503
    assert "boom" in broken.text


def test_metrics_serves_the_default_registry() -> None:
    metrics.DEAD_LETTERS.inc(0)
    response = TestClient(build_app(_ready)).get("/metrics")
    assert response.status_code == 200
    assert "llm_stream_dead_letters_total" in response.text


def test_metrics_serves_a_roles_own_registry_beside_the_default_one() -> None:
    from prometheus_client import REGISTRY, CollectorRegistry

    role_registry = CollectorRegistry()
    role_registry.register(metrics.OpenBatchGauges(lambda: 3, lambda: 42.0))
    response = TestClient(build_app(_ready, (REGISTRY, role_registry))).get("/metrics")
    assert "llm_stream_batches_open 3.0" in response.text
    assert "llm_stream_oldest_open_batch_age_seconds 42.0" in response.text
    assert "llm_stream_dead_letters_total" in response.text
    default_only = TestClient(build_app(_ready)).get("/metrics").text
    assert "llm_stream_batches_open" not in default_only
