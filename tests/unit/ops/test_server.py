from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr, ValidationError
from starlette.testclient import TestClient

from llm_stream.network import free_port
from llm_stream.ops import metrics
from llm_stream.ops.server import build_app, serving_ops
from llm_stream.settings import Settings


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


TOKEN = SecretStr("s3cr3t-metrics-token")


def _guarded() -> TestClient:
    return TestClient(build_app(_ready, metrics_token=TOKEN))


def test_metrics_with_a_token_answers_only_its_bearer() -> None:
    client = _guarded()
    ok = client.get("/metrics", headers={"Authorization": "Bearer s3cr3t-metrics-token"})
    assert ok.status_code == 200
    assert "llm_stream_dead_letters_total" in ok.text
    lower_scheme = client.get("/metrics", headers={"Authorization": "bearer s3cr3t-metrics-token"})
    assert lower_scheme.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer s3cr3t-metrics-token-and-more"},
        {"Authorization": "Basic s3cr3t-metrics-token"},
        {"Authorization": "s3cr3t-metrics-token"},
        {"Authorization": "Bearer "},
    ],
)
def test_metrics_with_a_token_refuses_anything_else(headers: dict[str, str]) -> None:
    response = _guarded().get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert "LLM_STREAM_OPS_METRICS_TOKEN" in response.text
    assert TOKEN.get_secret_value() not in response.text
    assert "llm_stream_" not in response.text


def test_health_endpoints_stay_open_and_never_show_the_token() -> None:
    client = TestClient(build_app(_not_ready, metrics_token=TOKEN))
    healthz, readyz = client.get("/healthz"), client.get("/readyz")
    assert (healthz.status_code, readyz.status_code) == (200, 503)
    for response in (healthz, readyz):
        assert TOKEN.get_secret_value() not in response.text
        assert TOKEN.get_secret_value() not in str(response.headers)


def test_an_empty_token_guards_nothing_open() -> None:
    with pytest.raises(ValidationError):
        Settings(ops_metrics_token="")
    client = TestClient(build_app(_ready, metrics_token=SecretStr("")))
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401


def test_the_token_is_read_from_the_environment_and_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLM_STREAM_OPS_METRICS_TOKEN", TOKEN.get_secret_value())
    settings = Settings()
    assert settings.ops_metrics_token == TOKEN
    assert TOKEN.get_secret_value() not in repr(settings)
    assert TOKEN.get_secret_value() not in str(settings.model_dump())


def test_the_bind_address_defaults_to_all_interfaces_for_containers() -> None:
    assert Settings.model_fields["ops_host"].default == "0.0.0.0"
    with pytest.raises(ValidationError):
        Settings(ops_port=70_000)


async def test_the_served_endpoint_binds_the_configured_address_and_guards_metrics() -> None:
    port = free_port()
    async with serving_ops("127.0.0.1", port, _ready, metrics_token=TOKEN) as server:
        assert server is not None
        assert server.address == f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=server.address) as client:
            assert (await client.get("/metrics")).status_code == 401
            bearer = {"Authorization": f"Bearer {TOKEN.get_secret_value()}"}
            assert (await client.get("/metrics", headers=bearer)).status_code == 200
            assert (await client.get("/healthz")).status_code == 200


def test_the_token_can_come_from_a_mounted_secret_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "ops-token"
    secret.write_text(TOKEN.get_secret_value() + "\n")
    monkeypatch.setenv("LLM_STREAM_OPS_METRICS_TOKEN_FILE", str(secret))
    assert Settings().ops_metrics_token == TOKEN
