"""Secrets never show: not in repr, logs, the /metrics text or error messages. (How they come
from files, Kubernetes secrets: test_settings_files.py.)"""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY, generate_latest

from llm_stream.kafka.connection import KafkaSecurityConfigError, kafka_connection
from llm_stream.kafka.publishers import build_broker
from llm_stream.settings import Settings

PASSWORD = "scram-pw-41c7"
CLIENT_SECRET = "oidc-secret-d02e"


def _secret_settings() -> Settings:
    return Settings(
        bootstrap_servers="127.0.0.1:9",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username="svc",
        sasl_plain_password=PASSWORD,
        sasl_oauth_client_secret=CLIENT_SECRET,
    )


def test_secrets_never_show_in_repr_dumps_or_the_connection() -> None:
    settings = _secret_settings()
    shown = [
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        repr(kafka_connection(settings)),
    ]
    for text in shown:
        assert PASSWORD not in text
        assert CLIENT_SECRET not in text


def test_security_errors_name_settings_not_their_values() -> None:
    settings = Settings(
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_provider="oidc",
        sasl_oauth_client_secret=CLIENT_SECRET,
    )
    with pytest.raises(KafkaSecurityConfigError) as refused:
        kafka_connection(settings)
    assert "sasl_oauth_token_url" in str(refused.value)
    assert CLIENT_SECRET not in str(refused.value)


async def test_secrets_never_reach_logs_or_metrics(caplog: pytest.LogCaptureFixture) -> None:
    settings = _secret_settings()
    caplog.set_level(logging.DEBUG)
    broker = build_broker(settings)  # FastStream's broker with its Prometheus middleware
    with pytest.raises(Exception) as failed:  # noqa: PT011 (nothing listens on port 9)
        await broker.connect()
    await broker.stop()
    metrics = generate_latest(REGISTRY).decode()
    for text in (caplog.text, metrics, str(failed.value), repr(failed.value)):
        assert PASSWORD not in text
        assert CLIENT_SECRET not in text
    assert "Unable" in caplog.text  # the failure itself was logged
