"""The notifier's settings: where batch events go and how hard it tries."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from llm_stream.settings.lists import split_commas


class WebhookSettings(BaseModel):
    """Every terminal batch status is delivered to every endpoint."""

    webhook_urls: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Endpoints the notifier delivers batch events to, comma-separated "
        "(percent-encode a comma inside a URL); empty: the notifier has nothing to do.",
    )
    webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="One whsec_ signing secret per webhook URL, comma-separated, in the same "
        "order (Standard Webhooks: whsec_ then base64).",
    )
    webhook_timeout_s: float = Field(
        10.0, gt=0, description="Time limit of one delivery attempt, in all (not per read)."
    )
    webhook_max_attempts: int = Field(
        8, ge=1, description="Attempts per event and endpoint before it is recorded as failed."
    )
    webhook_retry_base_s: float = Field(
        1.0, gt=0, description="Wait before the second attempt; doubled for each next one."
    )
    webhook_retry_cap_s: float = Field(60.0, gt=0, description="Longest wait between attempts.")
    webhook_max_concurrent: int = Field(
        64, ge=1, description="Batch events a notifier delivers at once."
    )

    @field_validator("webhook_urls", "webhook_secrets", mode="before")
    @classmethod
    def _split_webhook_lists(cls, value: Any) -> Any:
        return split_commas(value)
