"""Request and reply: which topics a request may ask the worker to answer on."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, field_validator


class ReplySettings(BaseModel):
    """Read by the worker (where it may write a reply) and the client (where it reads them)."""

    reply_topics_pattern: str = Field(
        r"llm-stream\.replies\..+",
        description="Regular expression a request's reply topic must match in full; empty: no "
        "request may ask for a reply. A request names a topic the worker then writes to, so "
        "grant producers write on the same names (a prefix ACL on llm-stream.replies.) and "
        "nothing else; the service's own topics are refused whatever the pattern says.",
    )
    reply_topic: str = Field(
        "llm-stream.replies.default",
        description="The topic the client's ask() names as its reply topic and reads.",
    )
    reply_metadata_timeout_s: float = Field(
        5.0,
        gt=0,
        description="How long a worker waits for the broker to confirm a reply topic exists "
        "(and for a reply's publish); past it the request is dead-lettered, never a stall.",
    )
    fetch_max_wait_ms: int = Field(
        500,
        ge=1,
        le=60_000,
        description="How long the broker may hold a worker's or a reply listener's fetch while "
        "no record is there (Kafka's fetch.max.wait.ms). Kafka answers a waiting fetch as soon "
        "as a record arrives; the embedded broker (Tansu) holds it about half this long "
        "whatever arrives, which then bounds request/reply latency from below.",
    )

    @field_validator("reply_topics_pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"not a regular expression: {error}") from error
        return pattern
