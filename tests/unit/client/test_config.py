"""``ClientConfig``: a library user gets the deployment's connection and topics from the
environment, never the server's settings object."""

from __future__ import annotations

import pytest

from llm_stream import ClientConfig, KafkaSecurityConfigError, LlmStreamError


def test_from_env_reads_the_connection_and_topics_and_overrides_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLM_STREAM_BOOTSTRAP_SERVERS", "kafka-a:9092")
    monkeypatch.setenv("LLM_STREAM_REQUESTS_TOPIC", "team-a.requests")
    monkeypatch.setenv("LLM_STREAM_MAX_MESSAGE_BYTES", "2097152")
    config = ClientConfig.from_env()
    assert config.connection["bootstrap_servers"] == "kafka-a:9092"
    assert config.requests_topic == "team-a.requests"
    assert config.max_message_bytes == 2_097_152
    overridden = ClientConfig.from_env(bootstrap_servers="kafka-b:9092", max_in_flight=None)
    assert overridden.connection["bootstrap_servers"] == "kafka-b:9092"
    assert overridden.requests_topic == "team-a.requests"


def test_from_env_refuses_contradictory_security_with_an_error_of_ours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLM_STREAM_SECURITY_PROTOCOL", "PLAINTEXT")
    monkeypatch.setenv("LLM_STREAM_SASL_MECHANISM", "PLAIN")
    with pytest.raises(KafkaSecurityConfigError) as refused:
        ClientConfig.from_env()
    assert isinstance(refused.value, LlmStreamError)
