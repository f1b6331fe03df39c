"""The one configuration object, read from ``LLM_STREAM_*`` environment variables.

Every process (worker, aggregator, submit, ...) reads the same settings so that a deployment
configures topics and security once. Command-line flags override single fields. The fields of
one concern (the gateway's, Kafka security, ...) are grouped in this package's modules; they
make one object all the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from llm_stream.errors import LlmStreamError
from llm_stream.settings.batch_limits import BatchLimitSettings
from llm_stream.settings.curation import CurationSettings
from llm_stream.settings.file_expiry import FileExpirySettings
from llm_stream.settings.gateway import GATEWAY_MIN_KEY_CHARS, GatewaySettings
from llm_stream.settings.kafka_security import KafkaSecuritySettings
from llm_stream.settings.models import ModelRoutingSettings
from llm_stream.settings.projects import ProjectSettings
from llm_stream.settings.quotas import QuotaSettings
from llm_stream.settings.replies import ReplySettings
from llm_stream.settings.stalls import StallSettings
from llm_stream.settings.waiting import WaitingSettings
from llm_stream.settings.webhooks import WebhookSettings
from llm_stream.settings_files import FileValuesSource

__all__ = ["GATEWAY_MIN_KEY_CHARS", "Settings", "SettingsRefusedError"]


class SettingsRefusedError(LlmStreamError, ValueError):
    """Settings that would open a door without saying so (an open gateway beyond loopback,
    credentials sent unencrypted): refused at start; the message names the setting that
    allows it."""


class Settings(
    BatchLimitSettings,
    GatewaySettings,
    ProjectSettings,
    QuotaSettings,
    WebhookSettings,
    KafkaSecuritySettings,
    ModelRoutingSettings,
    WaitingSettings,
    ReplySettings,
    FileExpirySettings,
    StallSettings,
    CurationSettings,
    BaseSettings,
):
    """Configuration shared by every llm-stream process: the fields here and those of each
    group (the gateway's, projects, quotas, the notifier's, Kafka security, a batch's limits, model
    routing, the worker's waiting queue, reply topics, file expiry, stalled batches,
    curation)."""

    # An invalid value (a short key, a URL with a password) is never echoed in an error.
    model_config = SettingsConfigDict(
        env_prefix="LLM_STREAM_", extra="ignore", hide_input_in_errors=True
    )

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
    webhook_failures_topic: str = Field(
        "llm-stream.webhook-failures",
        description="Webhook deliveries that failed every attempt, keyed by batch_id.",
    )

    worker_group_id: str = Field("llm-stream-workers", description="Consumer group of workers.")
    aggregator_group_id: str = Field(
        "llm-stream-aggregators", description="Consumer group of aggregators."
    )
    notifier_group_id: str = Field(
        "llm-stream-notifiers", description="Consumer group of webhook notifiers."
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
    topic_replication_factor: int = Field(1, ge=1, description="Replicas of topics it creates.")
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
    batch_max_line_bytes: int = Field(
        4 * 1_048_576,
        ge=1024,
        description="Longest batch input line (gateway, submit, run-batch): a longer one is an "
        "error, never read whole. Raise it together with max_message_bytes.",
    )
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "zstd", description="Codec of the record batches the service publishes."
    )
    max_poll_interval_ms: int = Field(
        300_000,
        ge=1,
        description="Consumer max.poll.interval.ms; the consume loops poll far more often.",
    )
    fetch_partition_bytes: int = Field(
        262_144,
        ge=1024,
        description="Bytes a consumer fetches from one partition at a time (Kafka's "
        "max.partition.fetch.bytes). Fetches are buffered per partition, so this bounds a "
        "process's memory; a larger record still comes whole (brokers since Kafka 0.10.1).",
    )
    fetch_max_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="Bytes a consumer fetches in one request (Kafka's fetch.max.bytes): bounds "
        "memory however large a batch is; a larger record still comes whole (KIP-74).",
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
    batch_retention_s: float = Field(
        30 * 86400.0,
        ge=0,
        description="A batch that ended this long ago gets tombstones on the batches and "
        "batch-status topics (its files stay); 0 keeps every batch for ever.",
    )
    history_sweep_interval_s: float = Field(
        3600.0,
        gt=0,
        description="How often each aggregator looks for batches to retire (one read of the "
        "batch-status topic).",
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
    # Removed when a process opens the store: what a crashed writer left. Older than any write
    # in flight (a temporary file is modified as it is written; an upload's parts go on).
    store_leftover_age_s: float = Field(
        6 * 3600,
        gt=0,
        description="Age after which a temporary file or an unfinished multipart upload in the "
        "file store is a leftover, removed at a process's start.",
    )

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the given fields replaced, ignoring None (flags left unset)."""
        values = {name: value for name, value in overrides.items() if value is not None}
        return self.model_validate({**self.model_dump(), **values}) if values else self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then ``*_FILE`` files, then plain environment variables."""
        files = FileValuesSource(settings_cls)
        return init_settings, files, env_settings, dotenv_settings, file_secret_settings

    def topics(self) -> list[str]:
        """Every topic the service uses, for creation and documentation."""
        return [
            self.requests_topic,
            self.results_topic,
            self.batches_topic,
            self.batch_status_topic,
            self.dead_letter_topic,
            self.webhook_failures_topic,
            self.workers_topic,
            self.rate_counts_topic,
            self.judgements_topic,
        ]
