"""Quotas and rate limits: how much work a project may queue, how fast a key may call."""

from __future__ import annotations

from pydantic import BaseModel, Field


class QuotaSettings(BaseModel):
    """Read by the gateway. Each limit here is the default of every project; a project in the
    projects file may set its own (docs/operations.md, Quotas and rate limits). 0: no limit."""

    quota_enqueued_tokens: int = Field(
        0,
        ge=0,
        description="Input tokens (estimated at creation) of a project's unfinished batches "
        "for one model; a batch past it fails with token_limit_exceeded, as OpenAI's do.",
    )
    quota_batches_in_flight: int = Field(
        0,
        ge=0,
        description="Unfinished batches of a project for one model; one more fails with "
        "batch_limit_exceeded.",
    )
    gateway_requests_per_minute: int = Field(
        0,
        ge=0,
        description="Requests each API key may make to /v1 in a sliding minute, across every "
        "gateway replica; past it: 429 with Retry-After and x-ratelimit-* headers.",
    )
    gateway_logins_per_minute: int = Field(
        30,
        ge=0,
        description="Sign-in attempts on the web page's login form per client address in a "
        "sliding minute, across every replica (wrong keys are held back sooner, by "
        "gateway_auth_max_failures).",
    )
    rate_counts_topic: str = Field(
        "llm-stream.rate-counts",
        description="Each gateway replica's request counts per key and minute, read by the "
        "others so that a limit holds across replicas (compacted, kept minutes).",
    )
    rate_counts_sync_s: float = Field(
        0.25,
        gt=0,
        le=10,
        description="How often a gateway replica publishes the counts that changed: a burst "
        "spread over replicas may pass a limit by what they admit within this time.",
    )
