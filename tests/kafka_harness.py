"""Pick the real Kafka-protocol broker the tests run against.

Order: ``KAFKA_BOOTSTRAP_SERVERS`` (a cluster used as is), else testcontainers' Kafka where a
Docker engine answers, else the embedded Tansu broker. The same tests run against all three.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def docker_engine_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@contextmanager
def kafka_bootstrap_servers() -> Iterator[tuple[str, str]]:
    """Yield ``(bootstrap_servers, kind)`` for the life of the context."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external, "external"
        return
    if docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server(), "testcontainers"
        return
    from llm_stream.broker.embedded import EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers, "embedded"
