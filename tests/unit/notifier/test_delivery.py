"""Attempts with exponential back-off and a cap, each signed afresh and verified by OpenAI's
client, until a 2xx answer or the last attempt."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from llm_stream.batch.status import BatchStatus
from llm_stream.notifier.delivery import (
    ERROR_BODY_BYTES,
    ERROR_BODY_CHARS,
    RetryPolicy,
    deliver,
    webhook_client,
)
from llm_stream.notifier.endpoints import WebhookEndpoint, configured_endpoints
from llm_stream.notifier.events import BatchEvent, event_of
from llm_stream.ops import metrics
from llm_stream.settings import Settings
from tests.webhook_receiver import SECRET, VerifyingReceiver, batch_in


class RecordedSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def _endpoint() -> WebhookEndpoint:
    settings = Settings(webhook_urls=["https://hooks.example/b"], webhook_secrets=[SECRET])
    return configured_endpoints(settings)[0]


def _event() -> BatchEvent:
    event = event_of(batch_in("batch_retried", BatchStatus.COMPLETED))
    assert event is not None
    return event


def _waits(policy: RetryPolicy) -> list[float]:
    """Every wait of a delivery that fails each attempt."""
    return [policy.delay_after(attempt) for attempt in range(1, policy.max_attempts)]


def test_waits_double_from_the_base_up_to_the_cap() -> None:
    policy = RetryPolicy(base_s=1.0, cap_s=10.0, max_attempts=7)
    assert _waits(policy) == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_the_default_schedule_ends_well_within_the_stall_timeout() -> None:
    settings = Settings()
    policy = RetryPolicy.from_settings(settings)
    worst = sum(_waits(policy)) + policy.max_attempts * settings.webhook_timeout_s
    assert worst < settings.stall_timeout_s


async def test_an_event_refused_three_times_arrives_on_the_fourth_attempt() -> None:
    receiver = VerifyingReceiver(fail_first=3)
    sleep = RecordedSleep()
    async with httpx.AsyncClient(transport=receiver.transport()) as client:
        outcome = await deliver(
            client, _endpoint(), _event(), RetryPolicy(0.5, 30.0, 8), sleep=sleep
        )
    assert outcome.delivered
    assert outcome.attempts == 4
    assert sleep.waits == [0.5, 1.0, 2.0]
    attempts = receiver.attempts_of(_event().id)
    assert [a.answered for a in attempts] == [503, 503, 503, 200]
    assert all(a.body == _event().body() for a in attempts)  # the same event, verified each time
    assert receiver.accepted()[0].event.data.id == "batch_retried"


async def test_a_delivery_that_never_succeeds_ends_after_the_last_attempt() -> None:
    before = metrics.WEBHOOK_ATTEMPTS_FAILED.labels("503")._value.get()
    receiver = VerifyingReceiver(fail_first=100)
    sleep = RecordedSleep()
    async with httpx.AsyncClient(transport=receiver.transport()) as client:
        outcome = await deliver(client, _endpoint(), _event(), RetryPolicy(1, 4, 5), sleep=sleep)
    assert not outcome.delivered
    assert outcome.attempts == 5
    assert outcome.last_error is not None
    assert outcome.last_error.startswith("HTTP 503")
    assert sleep.waits == [1, 2, 4, 4]
    assert len(receiver.deliveries) == 5
    assert metrics.WEBHOOK_ATTEMPTS_FAILED.labels("503")._value.get() == before + 5


async def test_a_connection_error_is_a_failed_attempt_and_is_retried() -> None:
    calls = 0

    def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(flaky)) as client:
        outcome = await deliver(
            client, _endpoint(), _event(), RetryPolicy(1, 1, 3), sleep=RecordedSleep()
        )
    assert outcome.delivered
    assert outcome.attempts == 2


async def test_a_redirect_is_not_followed() -> None:
    def redirect(request: httpx.Request) -> httpx.Response:
        assert request.url.host == "hooks.example", "followed a redirect"
        return httpx.Response(307, headers={"location": "http://169.254.169.254/"})

    settings = Settings()
    async with webhook_client(settings, httpx.MockTransport(redirect)) as client:
        outcome = await deliver(
            client, _endpoint(), _event(), RetryPolicy(1, 1, 2), sleep=RecordedSleep()
        )
    assert not outcome.delivered
    assert outcome.last_error is not None
    assert "307" in outcome.last_error


@pytest.mark.parametrize("attempts", [1, 3])
async def test_no_wait_comes_after_the_last_attempt(attempts: int) -> None:
    sleep = RecordedSleep()
    receiver = VerifyingReceiver(fail_first=100)
    async with httpx.AsyncClient(transport=receiver.transport()) as client:
        await deliver(client, _endpoint(), _event(), RetryPolicy(1, 8, attempts), sleep=sleep)
    assert len(sleep.waits) == attempts - 1


class TricklingServer:
    """A loopback HTTP server that answers 200 one header byte at a time, each well within
    any read timeout, for ``TRICKLE_BYTES`` bytes; counts the bytes sent before the client
    hung up."""

    TRICKLE_BYTES = 400

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/hook"
        self.sent = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection, _ = self._listener.accept()
        with connection:
            connection.recv(65536)
            try:
                connection.sendall(b"HTTP/1.1 200 OK\r\nx-slow: ")
                for _ in range(self.TRICKLE_BYTES):
                    time.sleep(0.02)
                    connection.sendall(b"a")
                    self.sent += 1
                connection.sendall(b"\r\ncontent-length: 0\r\n\r\n")
            except OSError:  # the client hung up
                pass

    def close(self) -> None:
        self._thread.join(timeout=30)
        self._listener.close()


async def test_an_attempt_is_bounded_in_all_not_per_read() -> None:
    """httpx's timeout bounds each read; a receiver that keeps every read short must still
    not hold an attempt longer than the timeout."""
    server = TricklingServer()
    settings = Settings(webhook_urls=[server.url], webhook_secrets=[SECRET], webhook_timeout_s=0.5)
    try:
        async with webhook_client(settings) as client:
            outcome = await deliver(
                client,
                configured_endpoints(settings)[0],
                _event(),
                RetryPolicy.from_settings(settings.with_overrides(webhook_max_attempts=1)),
            )
    finally:
        server.close()
    assert not outcome.delivered
    assert outcome.last_error == "AttemptTimeout: no answer within 0.5 s"
    assert server.sent < TricklingServer.TRICKLE_BYTES  # hung up part way


async def test_only_the_start_of_a_refusals_body_is_read() -> None:
    pulled = 0

    async def endless_page() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(1000):
            pulled += 1
            yield b"x" * 65536

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, content=endless_page())

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        outcome = await deliver(
            client, _endpoint(), _event(), RetryPolicy(1, 1, 1), sleep=RecordedSleep()
        )
    assert outcome.last_error == "HTTP 500: " + "x" * ERROR_BODY_CHARS
    assert pulled * 65536 <= ERROR_BODY_BYTES + 65536  # the first piece only


def test_answers_are_asked_for_uncompressed_so_a_bounded_read_is_bounded() -> None:
    assert webhook_client(Settings()).headers["accept-encoding"] == "identity"
