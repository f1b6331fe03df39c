"""The one configuration object, read from ``LLM_STREAM_*`` environment variables.

Every process (worker, aggregator, submit, ...) reads the same settings so that a deployment
configures topics and security once. Command-line flags override single fields.
"""

from __future__ import annotations

from pathlib import Path
from ssl import SSLContext
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

if TYPE_CHECKING:
    from faststream.security import BaseSecurity


class Settings(BaseSettings):
    """Configuration shared by every llm-stream process."""

    model_config = SettingsConfigDict(env_prefix="LLM_STREAM_", extra="ignore")

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated Kafka bootstrap servers."
    )

    requests_topic: str = Field(
        "llm-stream.requests", description="Request lines, one per message."
    )
    results_topic: str = Field("llm-stream.results", description="Result lines, keyed by batch_id.")
    batches_topic: str = Field(
        "llm-stream.batches", description="Batch manifests, keyed by batch_id."
    )
    batch_status_topic: str = Field(
        "llm-stream.batch-status", description="Batch objects emitted when a batch completes."
    )
    dead_letter_topic: str = Field(
        "llm-stream.dead-letter",
        description="Messages that cannot be attributed to a batch request, with the reason.",
    )

    worker_group_id: str = Field("llm-stream-workers", description="Consumer group of workers.")
    aggregator_group_id: str = Field(
        "llm-stream-aggregators", description="Consumer group of aggregators."
    )
    max_in_flight: int | None = Field(
        None,
        ge=1,
        description="Requests a worker keeps inside the engine at once; default: twice the "
        "engine's max_num_seqs, so the scheduler always has the next requests queued.",
    )

    session_timeout_ms: int = Field(
        10_000,
        ge=1,
        description="Consumer group session timeout: how soon a dead member's partitions move.",
    )
    heartbeat_interval_ms: int = Field(3_000, ge=1, description="Consumer group heartbeat.")
    topic_partitions: int = Field(
        8, ge=1, description="Partitions of topics the service creates; caps consumers per group."
    )
    topic_replication_factor: int = Field(
        1, ge=1, description="Replication factor of topics the service creates."
    )
    topic_min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="min.insync.replicas of topics the service creates (with acks=all, how many "
        "replicas must hold a result before it counts as published); unset: the broker's.",
    )
    max_message_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="Largest record the service publishes, after compression (Kafka's default "
        "message.max.bytes); a larger answer becomes an error line for its custom_id.",
    )
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "zstd", description="Codec of the record batches the service publishes."
    )
    max_poll_interval_ms: int = Field(
        300_000,
        ge=1,
        description="Consumer max.poll.interval.ms; the consume loops poll far more often.",
    )
    stall_timeout_s: float = Field(
        300.0,
        gt=0,
        description="/readyz fails when a partition with pending records has not advanced for "
        "this long.",
    )
    orphan_batch_timeout_s: float = Field(
        3600.0,
        gt=0,
        description="A batch with results but no manifest for this long is written as failed, "
        "so it stops holding back the aggregator's commits.",
    )
    spool_dir: Path | None = Field(
        None,
        description="Where the aggregator spools open batches (private to each process); "
        "default: a directory under the system temp dir.",
    )
    commit_interval_s: float = Field(
        0.5, gt=0, description="How often a worker commits its finished offsets."
    )
    drain_timeout_s: float = Field(
        30.0, ge=0, description="On SIGTERM, how long in-flight requests may take to finish."
    )
    otel_exporter: Literal["none", "console", "otlp"] = Field(
        "none",
        description="Where spans go; otlp reads OTEL_EXPORTER_OTLP_ENDPOINT (OTLP over HTTP).",
    )
    trace_link_limit: int = Field(
        1000, ge=0, description="Request spans the aggregator's finalise span links to, at most."
    )
    log_format: Literal["text", "json"] = Field("text", description="json: one object per line.")
    log_level: str = "INFO"
    ops_host: str = Field(
        "0.0.0.0",
        description="Address the /metrics and health endpoint binds: all interfaces, so that a "
        "container's probes and scrapers reach it; 127.0.0.1 keeps it on the host.",
    )
    ops_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Port of /metrics, /healthz and /readyz; unset: no HTTP endpoint.",
    )
    ops_metrics_token: SecretStr | None = Field(
        None,
        min_length=1,
        description="Bearer token /metrics requires (Authorization: Bearer ...); unset: open. "
        "/healthz and /readyz stay open for probes and carry no secrets.",
    )
    media_url_fetching: bool = Field(
        False,
        description="Let the worker's engine fetch http(s) media URLs (image_url, audio_url, "
        "video_url) from any host; off: only hosts in vLLM's --allowed-media-domains, and "
        "inline data: URLs.",
    )
    output_dir: Path = Field(Path("batches"), description="Where batch output files are written.")
    storage_url: str | None = Field(
        None,
        pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^?#]*)?$",
        description="Where batch files and uploads are stored: s3://bucket/prefix (object "
        "storage, credentials from the AWS provider chain); unset: output_dir.",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="Endpoint of an S3-compatible server (MinIO, Ceph, ...), addressed "
        "path-style; unset: AWS S3 as the AWS configuration says.",
    )

    # The OpenAI Batch API's limits on a batch (its input file and its metadata): the gateway
    # holds a batch to them; raised above OpenAI's values, they would let in batches that
    # ``batch.input_file`` and the manifest contract refuse.
    batch_max_file_bytes: int = Field(
        200 * 1024 * 1024,
        ge=1,
        le=200 * 1024 * 1024,
        description="Largest batch input file (OpenAI: 200 MB); also the gateway's upload limit.",
    )
    batch_max_lines: int = Field(
        50_000, ge=1, le=50_000, description="Most request lines in one batch (OpenAI: 50,000)."
    )
    batch_max_metadata_pairs: int = Field(
        16, ge=0, le=16, description="Most metadata pairs on a batch (OpenAI: 16)."
    )
    batch_max_metadata_key_chars: int = Field(
        64, ge=1, le=64, description="Longest metadata key (OpenAI: 64 characters)."
    )
    batch_max_metadata_value_chars: int = Field(
        512, ge=0, le=512, description="Longest metadata value (OpenAI: 512 characters)."
    )

    gateway_host: str | None = Field(
        None,
        description="Address of the HTTP gateway; unset: 0.0.0.0 with API keys, 127.0.0.1 "
        "without (an open gateway is not exposed by accident).",
    )
    gateway_port: int = Field(8000, ge=0, le=65535, description="Port of the HTTP gateway.")
    gateway_api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Bearer keys the gateway accepts, comma-separated; empty: no authentication.",
    )
    gateway_max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Largest request body the gateway reads, file uploads aside (those are "
        "bounded by batch_max_file_bytes).",
    )

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: (
        Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"] | None
    ) = None
    sasl_plain_username: str | None = None
    sasl_plain_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    enable_idempotence: bool = Field(
        False, description="Idempotent producer; needs a broker that supports InitProducerId."
    )

    @field_validator("gateway_api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        """``LLM_STREAM_GATEWAY_API_KEYS=key1,key2``: keys never hold commas or spaces."""
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the given fields replaced, ignoring None (flags left unset)."""
        values = {name: value for name, value in overrides.items() if value is not None}
        return self.model_validate({**self.model_dump(), **values}) if values else self

    def _ssl_context(self) -> SSLContext | None:
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            return None
        from aiokafka.helpers import create_ssl_context

        context: SSLContext = create_ssl_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
            certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
            keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
        )
        return context

    def faststream_security(self) -> BaseSecurity | None:
        """The same security settings as FastStream's KafkaBroker takes them."""
        from faststream.security import (
            SASLGSSAPI,
            BaseSecurity,
            SASLOAuthBearer,
            SASLPlaintext,
            SASLScram256,
            SASLScram512,
        )

        ssl_context = self._ssl_context()
        if self.sasl_mechanism is None:
            return BaseSecurity(ssl_context=ssl_context) if ssl_context else None
        if self.sasl_mechanism == "GSSAPI":
            return SASLGSSAPI(ssl_context=ssl_context)
        if self.sasl_mechanism == "OAUTHBEARER":
            return SASLOAuthBearer(ssl_context=ssl_context)
        classes = {
            "PLAIN": SASLPlaintext,
            "SCRAM-SHA-256": SASLScram256,
            "SCRAM-SHA-512": SASLScram512,
        }
        password = self.sasl_plain_password.get_secret_value() if self.sasl_plain_password else ""
        return classes[self.sasl_mechanism](
            username=self.sasl_plain_username or "", password=password, ssl_context=ssl_context
        )

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Connection and security keyword arguments shared by aiokafka clients."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism is not None:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
        if self.sasl_plain_username is not None:
            kwargs["sasl_plain_username"] = self.sasl_plain_username
        if self.sasl_plain_password is not None:
            kwargs["sasl_plain_password"] = self.sasl_plain_password.get_secret_value()
        ssl_context = self._ssl_context()
        if ssl_context is not None:
            kwargs["ssl_context"] = ssl_context
        return kwargs

    def topics(self) -> list[str]:
        """Every topic the service uses, for creation and documentation."""
        return [
            self.requests_topic,
            self.results_topic,
            self.batches_topic,
            self.batch_status_topic,
            self.dead_letter_topic,
        ]
