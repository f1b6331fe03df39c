from __future__ import annotations

import pytest

from llm_stream.kafka.connection import client_kwargs
from llm_stream.settings import Settings


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_STREAM_BOOTSTRAP_SERVERS", "kafka-1:9093,kafka-2:9093")
    monkeypatch.setenv("LLM_STREAM_RESULTS_TOPIC", "custom.results")
    settings = Settings()
    assert settings.bootstrap_servers == "kafka-1:9093,kafka-2:9093"
    assert settings.results_topic == "custom.results"
    assert settings.requests_topic == "llm-stream.requests"


def test_topics_are_distinct() -> None:
    topics = Settings().topics()
    assert len(topics) == len(set(topics)) == 9


def test_sasl_settings_reach_the_client_kwargs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_STREAM_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("LLM_STREAM_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("LLM_STREAM_SASL_PLAIN_USERNAME", "svc")
    monkeypatch.setenv("LLM_STREAM_SASL_PLAIN_PASSWORD", "s3cret")
    kwargs = client_kwargs(Settings())
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_password"] == "s3cret"
    assert "s3cret" not in repr(Settings())


def test_plaintext_client_kwargs_carry_no_security_options() -> None:
    assert client_kwargs(Settings(bootstrap_servers="h:1")) == {
        "bootstrap_servers": "h:1",
        "security_protocol": "PLAINTEXT",
    }


def test_invalid_in_flight_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_STREAM_MAX_IN_FLIGHT", "0")  # must be positive when set
    with pytest.raises(ValueError, match="max_in_flight"):
        Settings()


def test_an_invalid_secret_is_never_echoed_in_the_error() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as raised:
        Settings(gateway_api_keys="short-but-secret-value")
    assert "short-but-secret-value" not in str(raised.value)


@pytest.mark.parametrize(
    "variable", ["GATEWAY_API_KEYS", "GATEWAY_CORS_ORIGINS", "WEBHOOK_URLS", "WEBHOOK_SECRETS"]
)
def test_every_list_setting_is_read_from_one_comma_separated_variable(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each group's list fields split (two groups' validators of one name would hide one)."""
    values = ["https://a.example/" + "a" * 32, "https://b.example/" + "b" * 32]
    monkeypatch.setenv(f"LLM_STREAM_{variable}", " , ".join(values))
    read = getattr(Settings(), variable.lower())
    assert [getattr(value, "get_secret_value", lambda v=value: v)() for value in read] == values
