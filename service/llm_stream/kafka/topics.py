"""Create the service's topics if they do not exist yet, with the configured partition count.

Relying on broker-side auto-creation would give one partition (no scaling) on many clusters
and fail on clusters that disable it. The batches, batch-status, judgements and workers
topics are compacted: only the latest record per batch (or worker, or judged line) matters,
and they are read from the start.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from llm_stream.kafka.connection import client_kwargs, start_client
from llm_stream.kafka.diagnosis import CANNOT_CREATE_TOPIC
from llm_stream.network import servers_are_loopback
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)

#: How long a dead worker's last announcement stays on the workers topic: live workers
#: announce every few seconds, so only the dead ones' records grow this old.
WORKERS_RETENTION_MS = 7 * 86_400_000
#: How long gateway replicas' request counts are kept: a new replica reads the last minutes'.
RATE_COUNTS_RETENTION_MS = 10 * 60_000


def topic_configs(settings: Settings, topic: str) -> dict[str, str]:
    """Topic-level configs of a topic the service creates."""
    configs = {"max.message.bytes": str(settings.max_message_bytes)}
    if topic in (settings.batches_topic, settings.batch_status_topic, settings.judgements_topic):
        configs["cleanup.policy"] = "compact"
    if topic == settings.workers_topic:
        # A worker that died without its tombstone leaves a record; the age limit removes it.
        configs["cleanup.policy"] = "compact,delete"
        configs["retention.ms"] = str(WORKERS_RETENTION_MS)
    if topic == settings.rate_counts_topic:
        # Counts of the minute now and the one before matter; older ones only take room.
        configs["cleanup.policy"] = "compact,delete"
        configs["retention.ms"] = str(RATE_COUNTS_RETENTION_MS)
    if settings.topic_min_insync_replicas is not None:
        configs["min.insync.replicas"] = str(settings.topic_min_insync_replicas)
    return configs


def durability_warning(settings: Settings) -> str | None:
    """Topics of one replica on a cluster beyond this host: ``acks=all`` then waits for that
    one broker only, so losing its disk loses results the service counted as published."""
    if settings.topic_replication_factor > 1 or servers_are_loopback(settings.bootstrap_servers):
        return None
    return (
        f"creating topics with replication factor 1 on {settings.bootstrap_servers}: acks=all "
        "then means one broker's copy, lost with that broker; set "
        "LLM_STREAM_TOPIC_REPLICATION_FACTOR=3 and LLM_STREAM_TOPIC_MIN_INSYNC_REPLICAS=2 on a "
        "real cluster"
    )


async def ensure_topics(settings: Settings, topics: Iterable[str] | None = None) -> None:
    wanted = list(topics if topics is not None else settings.topics())
    connection = client_kwargs(settings)
    admin = AIOKafkaAdminClient(**connection)
    await start_client(admin, connection)
    try:
        existing = set(await admin.list_topics())
        missing = [topic for topic in wanted if topic not in existing]
        if not missing:
            return
        warning = durability_warning(settings)
        if warning is not None:
            logger.warning(warning)
        response = await admin.create_topics(
            [
                NewTopic(
                    topic,
                    settings.topic_partitions,
                    settings.topic_replication_factor,
                    topic_configs=topic_configs(settings, topic),
                )
                for topic in missing
            ]
        )
        for topic, code, message in response.topic_errors:
            # "already exists": another process created it between our list and create.
            if code not in (0, TopicAlreadyExistsError.errno):
                raise for_code(code)(f"{CANNOT_CREATE_TOPIC} {topic!r}: {message}")
        logger.info("created topics %s", missing)
    finally:
        await admin.close()
