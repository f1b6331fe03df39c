"""What the client needs to know about a deployment: how to reach Kafka and which topics to use.

An upstream service embeds the client, so it gets the connection and the topic names, never the
worker's or the aggregator's knobs (groups, engine limits, output directories).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from llm_stream.batch.request_line import DEFAULT_MAX_RECORD_BYTES
from llm_stream.kafka.connection import client_kwargs
from llm_stream.settings import Settings

#: ``Settings.batch_max_completion_window_s``'s default, for callers that hold no settings.
DEFAULT_MAX_COMPLETION_WINDOW_S: Final[int] = Settings.model_fields[
    "batch_max_completion_window_s"
].default


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Kafka connection and topic names of one deployment."""

    #: aiokafka keyword arguments: bootstrap servers and security (SSL, SASL).
    connection: dict[str, Any]
    requests_topic: str = Settings.model_fields["requests_topic"].default
    batches_topic: str = Settings.model_fields["batches_topic"].default
    batch_status_topic: str = Settings.model_fields["batch_status_topic"].default
    #: The topics' record limit: a line whose record would exceed it is refused before sending.
    max_message_bytes: int = DEFAULT_MAX_RECORD_BYTES
    #: Idempotent producer; needs a broker that supports it (see ``Settings``).
    enable_idempotence: bool = False
    #: The longest completion window a batch may be created with.
    max_completion_window_s: int = DEFAULT_MAX_COMPLETION_WINDOW_S
    #: The project this producer's batches belong to (``LLM_STREAM_PROJECT``); None: the
    #: default project. Kafka ACLs on the topics authorise the claim (docs/security.md).
    project: str | None = None
    #: Send each line to its model's requests topic, refusing models nobody serves.
    route_by_model: bool = False
    workers_topic: str = Settings.model_fields["workers_topic"].default
    #: Where ``ask`` has its replies sent (created on first use if missing).
    reply_topic: str = Settings.model_fields["reply_topic"].default
    #: Kafka's fetch.max.wait.ms for the reply listener (see ``Settings.fetch_max_wait_ms``).
    fetch_max_wait_ms: int = Settings.model_fields["fetch_max_wait_ms"].default
    #: Partitions and replicas of the reply topic, when ``ask`` creates it.
    topic_partitions: int = Settings.model_fields["topic_partitions"].default
    topic_replication_factor: int = Settings.model_fields["topic_replication_factor"].default

    @classmethod
    def from_env(cls, **overrides: Any) -> ClientConfig:
        """The deployment the ``LLM_STREAM_*`` environment (and ``*_FILE`` secrets) names,
        with ``overrides`` (e.g. ``bootstrap_servers=...``) on top; only the connection and
        topic fields are kept. Raises pydantic's ValidationError or ``SettingsRefusedError``
        for settings that cannot be used, ``KafkaSecurityConfigError`` for security ones."""
        return cls.from_settings(Settings().with_overrides(**overrides))

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientConfig:
        return cls(
            connection=client_kwargs(settings),
            requests_topic=settings.requests_topic,
            batches_topic=settings.batches_topic,
            batch_status_topic=settings.batch_status_topic,
            max_message_bytes=settings.max_message_bytes,
            enable_idempotence=settings.enable_idempotence,
            max_completion_window_s=settings.batch_max_completion_window_s,
            project=settings.project,
            route_by_model=settings.route_by_model,
            workers_topic=settings.workers_topic,
            reply_topic=settings.reply_topic,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            topic_partitions=settings.topic_partitions,
            topic_replication_factor=settings.topic_replication_factor,
        )
