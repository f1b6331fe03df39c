"""The configured webhook endpoints, each with its signer, and the headers of one attempt.

Signing is the ``standardwebhooks`` package's (the scheme OpenAI's client verifies with
``webhooks.unwrap``). Endpoints come from settings only, never from a batch's metadata: the
metadata is written by whoever submits a batch, and an address taken from it would let any
submitter make the notifier call hosts inside the deployment's network (SSRF), while a secret
taken from it would be readable by anyone who can read the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

from llm_stream.settings import Settings


class WebhookConfigError(ValueError):
    """The webhook settings cannot be used (no URL, a secret missing or malformed)."""


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    url: str
    signer: Webhook

    @property
    def display_url(self) -> str:
        """The URL without query or fragment, which may hold a token: for logs and records."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"

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
    endpoints = []
    for url, secret in zip(urls, secrets, strict=True):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise WebhookConfigError(f"not an http(s) URL: {url!r}")
        endpoints.append(WebhookEndpoint(url, _signer(secret.get_secret_value(), url)))
    return endpoints


def _signer(secret: str, url: str) -> Webhook:
    if not secret.startswith("whsec_"):
        raise WebhookConfigError(f"the secret of {url} does not start with whsec_")
    try:
        return Webhook(secret)
    except Exception as error:  # binascii.Error, EmptyWebhookSecretError
        raise WebhookConfigError(f"the secret of {url} is not whsec_ and base64") from error
