"""The HTTP gateway's settings: where it listens, its API keys, what it lets through."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from llm_stream.settings.lists import split_commas

#: Shortest API key the gateway accepts: 32 random characters are beyond guessing.
GATEWAY_MIN_KEY_CHARS = 32


class GatewaySettings(BaseModel):
    """Read by ``llm-stream gateway`` only."""

    gateway_host: str | None = Field(
        None,
        description="Address of the HTTP gateway; unset: 0.0.0.0 with API keys, 127.0.0.1 "
        "without (an open gateway is not exposed by accident).",
    )
    gateway_port: int = Field(8000, ge=0, le=65535, description="Port of the HTTP gateway.")
    gateway_api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Bearer keys the gateway accepts, comma-separated, each at least "
        f"{GATEWAY_MIN_KEY_CHARS} characters; empty: no authentication.",
    )
    gateway_allow_no_auth: bool = Field(
        False,
        description="Serve the gateway without API keys on an address beyond loopback; off: "
        "such a gateway refuses to start.",
    )
    # Failed logins and bearer keys per client address: past the limit, 429 until the oldest
    # failure leaves the window (a key cannot be guessed faster than this).
    gateway_auth_max_failures: int = Field(
        10, ge=1, description="Failed API keys one client address may send per window."
    )
    gateway_auth_failure_window_s: float = Field(
        60.0, gt=0, description="Window over which failed API keys are counted."
    )
    gateway_cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins that may call the gateway cross-origin (CORS), "
        "comma-separated, e.g. https://app.example.com; empty: none.",
    )
    gateway_max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Largest request body the gateway reads, file uploads aside (those are "
        "bounded by batch_max_file_bytes).",
    )

    @field_validator("gateway_api_keys", "gateway_cors_origins", mode="before")
    @classmethod
    def _split_gateway_lists(cls, value: Any) -> Any:
        return split_commas(value)

    @field_validator("gateway_api_keys")
    @classmethod
    def _long_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        """A short key can be guessed; the message says which, never what it is."""
        short = [str(n) for n, key in enumerate(keys, 1) if len(key) < GATEWAY_MIN_KEY_CHARS]
        if short:
            raise ValueError(
                f"key {', '.join(short)} of {len(keys)} is shorter than {GATEWAY_MIN_KEY_CHARS} "
                "characters (make one with: openssl rand -hex 32)"
            )
        return keys
