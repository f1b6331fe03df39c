"""The configured webhook endpoints: URLs paired with their secrets, refused when unusable, and
deliveries signed so that OpenAI's own client accepts them, and only with the secret.
(A URL's credentials end to end, through delivery: test_credentials.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from openai import InvalidWebhookSignatureError, OpenAI
from pydantic import SecretStr

from llm_stream.batch.status import BatchStatus
from llm_stream.notifier.endpoints import WebhookConfigError, configured_endpoints, redacted_url
from llm_stream.notifier.events import event_of
from llm_stream.settings import Settings
from tests.webhook_receiver import OTHER_SECRET, SECRET, batch_in


def _signed(now: datetime | None = None) -> tuple[bytes, dict[str, str], str]:
    settings = Settings(webhook_urls=["https://hooks.example/b?token=t"], webhook_secrets=[SECRET])
    [endpoint] = configured_endpoints(settings)
    event = event_of(batch_in("batch_signed", BatchStatus.COMPLETED))
    assert event is not None
    body = event.body()
    return body, endpoint.headers(event.id, body, now), event.id


def test_openais_client_unwraps_a_signed_delivery() -> None:
    body, headers, event_id = _signed()
    event = OpenAI(api_key="unused", webhook_secret=SECRET).webhooks.unwrap(body, headers)
    assert event.type == "batch.completed"
    assert event.id == event_id == headers["webhook-id"]
    assert event.data.id == "batch_signed"


def test_openais_client_refuses_a_delivery_under_another_secret() -> None:
    body, headers, _ = _signed()
    with pytest.raises(InvalidWebhookSignatureError):
        OpenAI(api_key="unused", webhook_secret=OTHER_SECRET).webhooks.unwrap(body, headers)


def test_openais_client_refuses_a_changed_body() -> None:
    body, headers, _ = _signed()
    with pytest.raises(InvalidWebhookSignatureError):
        OpenAI(api_key="unused", webhook_secret=SECRET).webhooks.unwrap(
            body.replace(b"batch_signed", b"batch_forged"), headers
        )


def test_a_signature_from_long_ago_is_refused_so_retries_are_signed_afresh() -> None:
    body, headers, _ = _signed(datetime.now(UTC) - timedelta(minutes=10))
    with pytest.raises(InvalidWebhookSignatureError, match="too old"):
        OpenAI(api_key="unused", webhook_secret=SECRET).webhooks.unwrap(body, headers)


def test_urls_and_secrets_come_comma_separated_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLM_STREAM_WEBHOOK_URLS", "https://a.example/h, http://b.example:81/x?k=v")
    monkeypatch.setenv("LLM_STREAM_WEBHOOK_SECRETS", f"{SECRET},{OTHER_SECRET}")
    settings = Settings()
    assert SECRET not in repr(settings)
    endpoints = configured_endpoints(settings)
    assert [e.url for e in endpoints] == ["https://a.example/h", "http://b.example:81/x?k=v"]
    assert endpoints[1].display_url == "http://b.example:81/x"


@pytest.mark.parametrize(
    ("urls", "secrets", "problem"),
    [
        ([], [], "no webhook URL"),
        (["https://a.example/h"], [], "1 webhook URLs but 0 secrets"),
        (["https://a.example/h"], ["not-whsec"], "does not start with whsec_"),
        (["https://a.example/h"], ["whsec_###"], "not whsec_ and base64"),
        (["file:///etc/passwd"], [SECRET], "not an http"),
    ],
)
def test_unusable_webhook_settings_are_refused(
    urls: list[str], secrets: list[str], problem: str
) -> None:
    settings = Settings(webhook_urls=urls, webhook_secrets=[SecretStr(s) for s in secrets])
    with pytest.raises(WebhookConfigError, match=problem):
        configured_endpoints(settings)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@hooks.example:8443/b?token=t#frag", "https://hooks.example:8443/b"),
        ("http://hooks.example", "http://hooks.example"),
        ("http://[::1", "(unparseable URL)"),
    ],
)
def test_a_url_is_shown_without_what_may_hold_a_secret(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


def test_an_endpoints_repr_shows_none_of_its_url_or_signer() -> None:
    settings = Settings(
        webhook_urls=["https://user:pw@hooks.example/b?token=t"], webhook_secrets=[SECRET]
    )
    [endpoint] = configured_endpoints(settings)
    assert endpoint.auth == ("user", "pw")
    shown = repr(endpoint)
    assert "token" not in shown
    assert "pw" not in shown
    assert SECRET not in shown
