"""A webhook receiver built on the official ``openai`` client, and terminal batch objects.

Every delivery is checked as a user's receiver checks it: ``OpenAI(webhook_secret=...)
.webhooks.unwrap(body, headers)``. The receiver answers 503 to the first ``fail_first``
attempts of each event, then 200; a delivery ``unwrap`` refuses gets 400.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from openai import OpenAI

from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.contracts import BatchManifest, BatchObject

#: A valid Standard Webhooks secret (whsec_ and base64 of 32 bytes), for tests only.
SECRET = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
OTHER_SECRET = "whsec_" + "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="


def batch_in(batch_id: str, status: BatchStatus, at: int = 1_750_000_000) -> BatchObject:
    """``batch_id``'s object in ``status``, every status it passed through reached at ``at``."""
    manifest = BatchManifest(batch_id=batch_id, endpoint="/v1/completions", request_count=2)
    reached: dict[BatchStatus, int] = {} if status is BatchStatus.VALIDATING else {status: at}
    if status is BatchStatus.CANCELLED:
        reached[BatchStatus.CANCELLING] = at - 1
    return batch_object(manifest, status, completed=2, reached_at=reached)


@dataclass(frozen=True)
class Delivery:
    """One attempt as the receiver saw it."""

    headers: dict[str, str]
    body: bytes
    answered: int
    event: Any = None  # what unwrap returned, when it accepted the delivery
    refused: str | None = None  # why unwrap refused it


class VerifyingReceiver:
    """Checks deliveries with ``openai``'s ``webhooks.unwrap``; records every attempt."""

    def __init__(self, secret: str = SECRET, *, fail_first: int = 0) -> None:
        self._client = OpenAI(api_key="unused", webhook_secret=secret)
        self._fail_first = fail_first
        self._attempts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.deliveries: list[Delivery] = []

    def receive(self, body: bytes, headers: Mapping[str, str]) -> int:
        """The HTTP status the receiver answers ``body`` with."""
        headers = {name.lower(): value for name, value in headers.items()}
        try:
            event = self._client.webhooks.unwrap(body, headers)
        except Exception as error:  # InvalidWebhookSignatureError, a missing header, ...
            return self._keep(Delivery(headers, body, 400, refused=f"{type(error).__name__}"))
        with self._lock:
            self._attempts[event.id] += 1
            failing = self._attempts[event.id] <= self._fail_first
        return self._keep(Delivery(headers, body, 503 if failing else 200, event=event))

    def accepted(self) -> list[Delivery]:
        """Deliveries that unwrap accepted and the receiver answered 200."""
        with self._lock:
            return [d for d in self.deliveries if d.answered == 200]

    def attempts_of(self, event_id: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.event is not None and d.event.id == event_id]

    def transport(self) -> httpx.MockTransport:
        """An in-memory transport that answers as this receiver (no socket)."""

        def answer(request: httpx.Request) -> httpx.Response:
            return httpx.Response(self.receive(request.content, dict(request.headers)))

        return httpx.MockTransport(answer)

    def _keep(self, delivery: Delivery) -> int:
        with self._lock:
            self.deliveries.append(delivery)
        return delivery.answered


class ReceiverServer:
    """``receiver`` served over HTTP on loopback, in a thread, until ``close``."""

    def __init__(self, receiver: VerifyingReceiver) -> None:
        outer = receiver

        class _Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status = outer.receive(body, dict(self.headers.items()))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the receiver's own record is the log."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/batches"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
