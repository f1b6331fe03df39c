"""The configured webhook endpoints, each with its signer, and the headers of one attempt.

Signing is the ``standardwebhooks`` package's (the scheme OpenAI's client verifies with
``webhooks.unwrap``). Endpoints come from settings only, never from a batch's metadata: the
metadata is written by whoever submits a batch, and an address taken from it would let any
submitter make the notifier call hosts inside the deployment's network (SSRF), while a secret
taken from it would be readable by anyone who can read the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

from llm_stream.errors import LlmStreamError
from llm_stream.settings import Settings


class WebhookConfigError(LlmStreamError, ValueError):
    """The webhook settings cannot be used (no URL, a secret missing or malformed)."""


def redacted_url(url: str) -> str:
    """``url`` fit for logs, errors and records: scheme, host, port and path only. Its
    ``user:password``, query and fragment may each hold a secret."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unparseable URL (a bad IPv6 literal): nothing of it is shown
        return "(unparseable URL)"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """One endpoint. ``url`` never holds the configured URL's ``user:password``: that goes
    to ``auth`` (HTTP Basic, as a client would send it from the URL), so no request URL that
    httpx logs or puts in an error can carry it."""

    url: str = field(repr=False)  # its query string may be a token: ``display_url`` is shown
    signer: Webhook = field(repr=False)
    auth: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def display_url(self) -> str:
        return redacted_url(self.url)

    def headers(self, event_id: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
        """Headers of one attempt, signed at ``now``: receivers refuse a timestamp more than
        five minutes off, so every retry is signed afresh."""
        signed_at = now or datetime.now(UTC)
        return {
            "content-type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": str(int(signed_at.timestamp())),
            "webhook-signature": self.signer.sign(event_id, signed_at, body.decode()),
        }


def configured_endpoints(settings: Settings) -> list[WebhookEndpoint]:
    """``webhook_urls`` paired in order with ``webhook_secrets``; WebhookConfigError if not."""
    urls, secrets = settings.webhook_urls, settings.webhook_secrets
    if not urls:
        raise WebhookConfigError("no webhook URL is configured (LLM_STREAM_WEBHOOK_URLS)")
    if len(secrets) != len(urls):
        raise WebhookConfigError(
            f"{len(urls)} webhook URLs but {len(secrets)} secrets "
            "(LLM_STREAM_WEBHOOK_SECRETS: one whsec_ secret per URL, in the same order)"
        )
    return [
        _endpoint(number, url.get_secret_value(), secret.get_secret_value())
        for number, (url, secret) in enumerate(zip(urls, secrets, strict=True), start=1)
    ]


def _endpoint(number: int, url: str, secret: str) -> WebhookEndpoint:
    """The ``number``th configured endpoint; errors name it by number, never by its text."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise WebhookConfigError(f"webhook URL {number} is not an http(s) URL")
    auth = (parsed.username, parsed.password) if parsed.userinfo else None
    bare = str(parsed.copy_with(userinfo=b""))
    return WebhookEndpoint(bare, _signer(number, secret), auth)


def _signer(number: int, secret: str) -> Webhook:
    if not secret.startswith("whsec_"):
        raise WebhookConfigError(f"the secret of webhook URL {number} does not start with whsec_")
    try:
        return Webhook(secret)
    except Exception as error:  # binascii.Error, EmptyWebhookSecretError
        raise WebhookConfigError(
            f"the secret of webhook URL {number} is not whsec_ and base64"
        ) from error
