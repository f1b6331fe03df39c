"""Every protocol/mechanism pair builds the same connection for aiokafka's clients and for
FastStream's broker, and contradictory settings are refused before any client is built.

These are construction-level checks: the embedded broker cannot authenticate users (see
docs/security.md), so SASL is not exercised end to end here; TLS is (tests/integration).
"""

from __future__ import annotations

import gc
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import OAuthAuthenticator
from faststream.kafka import KafkaBroker

from llm_stream.client import ClientConfig
from llm_stream.kafka import connection as connection_module
from llm_stream.kafka.connection import KafkaSecurityConfigError, kafka_connection
from llm_stream.kafka.oauth import MskIamTokenProvider, OidcTokenProvider
from llm_stream.settings import Settings

#: The keys FastStream's KafkaBroker hands to the aiokafka clients it builds.
_SECURITY_KEYS = (
    "security_protocol",
    "ssl_context",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
    "sasl_oauth_token_provider",
)


@pytest.fixture(scope="module")
def cafile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(path)
    return path


def _settings(protocol: str, mechanism: str | None, cafile: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {"bootstrap_servers": "kafka-1:9093,kafka-2:9093"}
    values["security_protocol"] = protocol
    values["sasl_mechanism"] = mechanism
    if protocol in ("SSL", "SASL_SSL"):
        values["ssl_cafile"] = cafile
    if mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        values |= {"sasl_plain_username": "svc", "sasl_plain_password": "pw-1"}
    if mechanism == "OAUTHBEARER":
        values |= {
            "sasl_oauth_provider": "oidc",
            "sasl_oauth_token_url": "https://idp.example.com/token",
            "sasl_oauth_client_id": "llm-stream",
            "sasl_oauth_client_secret": "cs-1",
        }
    # Construction only: nothing is sent, so credentials over SASL_PLAINTEXT may be allowed.
    values["allow_cleartext_credentials"] = protocol == "SASL_PLAINTEXT"
    return Settings(**values | extra)


PAIRS = [
    ("PLAINTEXT", None),
    ("SSL", None),
    *[
        (protocol, mechanism)
        for protocol in ("SASL_PLAINTEXT", "SASL_SSL")
        for mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
    ],
]


@pytest.mark.parametrize(("protocol", "mechanism"), PAIRS)
async def test_aiokafka_and_faststream_get_the_same_connection(
    protocol: str, mechanism: str | None, cafile: Path
) -> None:
    settings = _settings(protocol, mechanism, cafile)
    connection = kafka_connection(settings)
    kwargs = connection.aiokafka_kwargs()
    assert kwargs["bootstrap_servers"] == "kafka-1:9093,kafka-2:9093"
    assert kwargs["security_protocol"] == protocol
    assert kwargs.get("sasl_mechanism") == mechanism
    context = kwargs.get("ssl_context")
    assert (context is not None) == protocol.endswith("SSL")
    if context is not None:
        assert context.check_hostname
        assert context.verify_mode == ssl.CERT_REQUIRED
    if mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("svc", "pw-1")
    if mechanism == "OAUTHBEARER":
        assert isinstance(kwargs["sasl_oauth_token_provider"], OidcTokenProvider)

    # FastStream builds its producer from the keyword arguments its broker keeps.
    broker = KafkaBroker(**connection.faststream_kwargs())
    assert broker._connection_kwargs["bootstrap_servers"] == ["kafka-1:9093,kafka-2:9093"]
    producers = [AIOKafkaProducer(**broker._connection_kwargs), AIOKafkaProducer(**kwargs)]
    through_faststream = producers[0].client
    # aiokafka's own constructors accept ours (they check, e.g., the OAUTHBEARER provider).
    consumer = AIOKafkaConsumer(**kwargs)
    clients = [producers[1].client, consumer._client, AIOKafkaAdminClient(**kwargs)._client]
    for started in [*producers, consumer]:
        await started.stop()  # never started: closed, so none is reported unclosed
    for client in clients:
        for key in _SECURITY_KEYS:
            assert getattr(client, f"_{key}") == getattr(through_faststream, f"_{key}"), key
    assert through_faststream._security_protocol == protocol
    if mechanism is not None:  # aiokafka's default, PLAIN, is unused without SASL
        assert through_faststream._sasl_mechanism == mechanism
    assert ClientConfig.from_settings(settings).connection.keys() == kwargs.keys()


def test_plaintext_carries_no_security_options() -> None:
    assert kafka_connection(Settings(bootstrap_servers="h:1")).aiokafka_kwargs() == {
        "bootstrap_servers": "h:1",
        "security_protocol": "PLAINTEXT",
    }
    assert kafka_connection(Settings()).faststream_kwargs()["security"] is None


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs sasl_mechanism"),
        ({"sasl_mechanism": "PLAIN"}, "is set but security_protocol is PLAINTEXT"),
        ({"security_protocol": "SSL", "sasl_mechanism": "SCRAM-SHA-512"}, "use SASL_SSL"),
        ({"ssl_cafile": "ca.pem"}, "does not use TLS"),
        ({"security_protocol": "SSL", "ssl_keyfile": "k.pem"}, "needs ssl_certfile"),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256"},
            "needs sasl_plain_username and sasl_plain_password",
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"},
            "needs sasl_oauth_provider",
        ),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "OAUTHBEARER",
                "sasl_oauth_provider": "oidc",
                "sasl_oauth_client_id": "x",
            },
            "needs sasl_oauth_token_url, sasl_oauth_client_secret",
        ),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "OAUTHBEARER",
                "sasl_oauth_provider": "msk_iam",
            },
            "needs sasl_oauth_aws_region",
        ),
    ],
)
def test_contradictory_or_incomplete_security_is_refused(
    values: dict[str, Any], complaint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    with pytest.raises(KafkaSecurityConfigError, match=complaint):
        kafka_connection(Settings(**values))


def test_unreadable_tls_files_are_named(tmp_path: Path) -> None:
    settings = Settings(security_protocol="SSL", ssl_cafile=tmp_path / "missing.pem")
    with pytest.raises(KafkaSecurityConfigError, match=r"missing\.pem"):
        kafka_connection(settings)


async def test_msk_iam_provider_is_chosen_and_aiokafka_sends_its_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    settings = Settings(
        security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER", sasl_oauth_provider="msk_iam"
    )
    provider = kafka_connection(settings).aiokafka_kwargs()["sasl_oauth_token_provider"]
    assert isinstance(provider, MskIamTokenProvider)
    assert provider.region == "eu-west-1"
    # The same step aiokafka's connection runs in its SASL handshake.
    payload, expect_response = await OAuthAuthenticator(sasl_oauth_token_provider=provider).step(
        None
    )
    token = await provider.token()
    assert payload == f"n,,\x01auth=Bearer {token}\x01\x01".encode()
    assert expect_response


@pytest.fixture
def fresh_warnings() -> Iterator[None]:
    connection_module._warn_once.cache_clear()
    yield
    connection_module._warn_once.cache_clear()


_CREDENTIALS: dict[str, dict[str, Any]] = {
    "PLAIN": {"sasl_plain_username": "svc", "sasl_plain_password": "pw-secret-1"},
    "SCRAM-SHA-512": {"sasl_plain_username": "svc", "sasl_plain_password": "pw-secret-1"},
    "OAUTHBEARER": {
        "sasl_oauth_provider": "oidc",
        "sasl_oauth_token_url": "https://idp.example.com/token",
        "sasl_oauth_client_id": "llm-stream",
        "sasl_oauth_client_secret": "cs-secret-1",
    },
}


@pytest.mark.parametrize("mechanism", list(_CREDENTIALS))
def test_credentials_over_sasl_plaintext_beyond_loopback_are_refused_unless_allowed(
    mechanism: str, fresh_warnings: None, caplog: pytest.LogCaptureFixture
) -> None:
    values = {
        "bootstrap_servers": "127.0.0.1:9092,kafka-2:9092",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        **_CREDENTIALS[mechanism],
    }
    with pytest.raises(KafkaSecurityConfigError) as refused:
        kafka_connection(Settings(**values))
    message = str(refused.value)
    assert f"{mechanism} over SASL_PLAINTEXT sends its credentials unencrypted" in message
    assert "use SASL_SSL" in message
    assert "LLM_STREAM_ALLOW_CLEARTEXT_CREDENTIALS=true" in message
    assert "secret-1" not in message
    with caplog.at_level(logging.WARNING, logger=connection_module.__name__):
        kafka_connection(Settings(**values, allow_cleartext_credentials=True))
    assert "(allowed by LLM_STREAM_ALLOW_CLEARTEXT_CREDENTIALS)" in caplog.text


def test_credentials_over_sasl_plaintext_on_loopback_are_warned_about_once(
    fresh_warnings: None, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        bootstrap_servers="localhost:9092,[::1]:9093",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        **_CREDENTIALS["PLAIN"],
    )
    with caplog.at_level(logging.WARNING, logger=connection_module.__name__):
        for _ in range(3):  # every client built checks again
            kafka_connection(settings)
    [warning] = [r for r in caplog.records if "SASL_PLAINTEXT" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "pw-secret-1" not in warning.getMessage()


def test_kerberos_over_sasl_plaintext_is_not_refused() -> None:
    settings = Settings(
        bootstrap_servers="kafka:9092", security_protocol="SASL_PLAINTEXT", sasl_mechanism="GSSAPI"
    )
    assert kafka_connection(settings).sasl_mechanism == "GSSAPI"


def _oidc(token_url: str, **extra: Any) -> Settings:
    values = {**_CREDENTIALS["OAUTHBEARER"], "sasl_oauth_token_url": token_url}
    return Settings(security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER", **values | extra)


def test_an_oidc_token_url_over_http_is_refused_beyond_loopback(
    fresh_warnings: None, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(KafkaSecurityConfigError, match="client secret unencrypted: use an https"):
        kafka_connection(_oidc("http://idp.example.com/token"))
    with pytest.raises(KafkaSecurityConfigError, match="is not an https:// URL"):
        kafka_connection(_oidc("ftp://idp.example.com/token"))
    with caplog.at_level(logging.WARNING, logger=connection_module.__name__):
        kafka_connection(_oidc("http://127.0.0.1:8080/token"))
        assert "client secret unencrypted" in caplog.text
        caplog.clear()
        kafka_connection(_oidc("http://idp.example.com/token", allow_cleartext_credentials=True))
        assert "allowed by LLM_STREAM_ALLOW_CLEARTEXT_CREDENTIALS" in caplog.text
        caplog.clear()
        kafka_connection(_oidc("https://idp.example.com/token"))
        assert caplog.text == ""


def test_one_connection_per_settings_object_shared_by_every_client_and_gone_with_it() -> None:
    settings = Settings(bootstrap_servers="kafka:9092")
    first = kafka_connection(settings)
    assert kafka_connection(settings) is first  # the broker, consumers and admin share it
    other = Settings(bootstrap_servers="other:9092")
    assert kafka_connection(other).bootstrap_servers == "other:9092"
    key = id(settings)
    assert key in connection_module._CONNECTIONS
    del settings, first
    gc.collect()
    assert key not in connection_module._CONNECTIONS  # state grows with live settings only
