"""A webhook URL's ``user:password`` reaches the receiver as HTTP Basic and appears nowhere
else: not in the request URL, the logs (ours and httpx's), the errors or the failure record."""

from __future__ import annotations

import base64
import logging

import httpx
import pytest

from llm_stream.batch.status import BatchStatus
from llm_stream.notifier.app import failure_record
from llm_stream.notifier.delivery import RetryPolicy, deliver, webhook_client
from llm_stream.notifier.endpoints import WebhookConfigError, configured_endpoints
from llm_stream.notifier.events import event_of
from llm_stream.settings import Settings
from tests.webhook_receiver import SECRET, batch_in

USER, PASSWORD = "hook-user", "pa55-w0rd%21"
URL = f"https://{USER}:{PASSWORD}@hooks.example/b?k=v"


async def _no_wait(seconds: float) -> None:
    pass


async def test_credentials_go_as_basic_auth_and_into_no_log_error_or_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    requests: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if len(requests) == 1:  # an error that quotes the URL it was sent to
            raise httpx.ConnectError(f"cannot reach {request.url}", request=request)
        return httpx.Response(500, text="try later")

    settings = Settings(webhook_urls=[URL], webhook_secrets=[SECRET])
    [endpoint] = configured_endpoints(settings)
    event = event_of(batch_in("batch_secret", BatchStatus.COMPLETED))
    assert event is not None
    async with webhook_client(settings, httpx.MockTransport(refuse)) as client:
        outcome = await deliver(client, endpoint, event, RetryPolicy(1, 1, 2), sleep=_no_wait)

    assert not outcome.delivered
    expected = base64.b64encode(f"{USER}:pa55-w0rd!".encode()).decode()  # percent-decoded
    assert [request.headers["authorization"] for request in requests] == [f"Basic {expected}"] * 2
    assert [str(request.url) for request in requests] == ["https://hooks.example/b?k=v"] * 2
    assert endpoint.display_url == "https://hooks.example/b"
    record = failure_record(outcome, failed_at=0).decode()
    written = [caplog.text, outcome.last_error or "", record, repr(endpoint), endpoint.url]
    assert "cannot reach" in caplog.text  # the error was logged, without the credentials
    for text in written:
        assert "w0rd" not in text
        assert USER not in text


@pytest.mark.parametrize(
    "url",
    [f"ftp://{USER}:{PASSWORD}@hooks.example/b", f"http://{USER}:{PASSWORD}@[::1/b", PASSWORD],
)
def test_a_refused_url_is_named_by_its_number_not_its_text(url: str) -> None:
    settings = Settings(webhook_urls=["https://a.example/h", url], webhook_secrets=[SECRET] * 2)
    with pytest.raises(WebhookConfigError) as refused:
        configured_endpoints(settings)
    assert str(refused.value) == "webhook URL 2 is not an http(s) URL"


def test_a_bad_secret_names_its_url_by_number() -> None:
    settings = Settings(webhook_urls=[URL], webhook_secrets=["not-a-secret"])
    with pytest.raises(WebhookConfigError, match="webhook URL 1 does not start") as refused:
        configured_endpoints(settings)
    assert "w0rd" not in str(refused.value)


def test_the_settings_never_show_a_webhook_urls_credentials_or_query() -> None:
    settings = Settings(webhook_urls=[URL], webhook_secrets=[SECRET])
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert PASSWORD not in shown
        assert "k=v" not in shown
    endpoint = configured_endpoints(settings)[0]
    assert endpoint.url.startswith("https://hooks.example/b")
    assert "k=v" not in repr(endpoint)
    assert PASSWORD not in repr(endpoint)
