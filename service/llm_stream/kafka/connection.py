"""How every Kafka client of the service connects: one function of the settings.

aiokafka's producers, consumers and admin clients, FastStream's ``KafkaBroker`` (which takes
security as a ``BaseSecurity`` object and derives the protocol from it), the gateway and the
client library all get their bootstrap servers, TLS context and SASL credentials from
``kafka_connection``, built once per settings object (its checks, TLS context and token
provider) and shared by every client made from those settings, so PLAINTEXT, SSL,
SASL_PLAINTEXT and SASL_SSL with PLAIN, SCRAM or OAUTHBEARER mean the same to each of them.
``check_security`` refuses combinations that some client would read differently (a SASL
mechanism under PLAINTEXT, TLS files without TLS), and credentials that would cross the
network unencrypted unless that is explicitly allowed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiokafka.errors import KafkaConnectionError
from pydantic import SecretStr

from llm_stream.errors import LlmStreamError
from llm_stream.network import is_loopback, servers_are_loopback

if TYPE_CHECKING:
    from faststream.security import BaseSecurity

    from llm_stream.settings import Settings

logger = logging.getLogger(__name__)

_TLS_PROTOCOLS = ("SSL", "SASL_SSL")
_SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
_PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: Mechanisms whose exchange, unencrypted, gives away a secret: PLAIN's password and
#: OAUTHBEARER's token as they are, SCRAM's salted proof to an offline dictionary attack.
_SECRET_MECHANISMS = (*_PASSWORD_MECHANISMS, "OAUTHBEARER")


class KafkaSecurityConfigError(LlmStreamError, ValueError):
    """The security settings contradict each other or miss a value a mechanism needs."""


class KafkaTlsError(KafkaConnectionError, LlmStreamError):  # type: ignore[misc]
    """No TLS session with the brokers; the message says which setting to change."""


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    """Bootstrap servers and security of one deployment, in the form each client takes."""

    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: SecretStr | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    token_provider: Any = field(default=None, repr=False)

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``AIOKafkaProducer``, ``AIOKafkaConsumer`` and the admin client."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.ssl_context is not None:
            kwargs["ssl_context"] = self.ssl_context
        if self.sasl_mechanism is not None:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
        if self.sasl_mechanism in _PASSWORD_MECHANISMS:
            kwargs["sasl_plain_username"] = self.sasl_plain_username
            assert self.sasl_plain_password is not None  # check_security requires it
            kwargs["sasl_plain_password"] = self.sasl_plain_password.get_secret_value()
        if self.sasl_mechanism == "OAUTHBEARER":
            kwargs["sasl_oauth_token_provider"] = self.token_provider
        return kwargs

    def faststream_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of FastStream's ``KafkaBroker``: the same connection, expressed as
        the ``BaseSecurity`` subclass FastStream parses back into exactly these aiokafka
        arguments (and describes in the AsyncAPI document)."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security": self._faststream_security(),
        }
        if self.sasl_mechanism == "OAUTHBEARER":
            kwargs["sasl_oauth_token_provider"] = self.token_provider
        return kwargs

    def _faststream_security(self) -> BaseSecurity | None:
        from faststream.security import (
            SASLGSSAPI,
            BaseSecurity,
            SASLOAuthBearer,
            SASLPlaintext,
            SASLScram256,
            SASLScram512,
        )

        use_ssl = self.security_protocol in _TLS_PROTOCOLS
        context = self.ssl_context
        if self.sasl_mechanism is None:
            return BaseSecurity(ssl_context=context, use_ssl=use_ssl) if use_ssl else None
        if self.sasl_mechanism == "OAUTHBEARER":
            return SASLOAuthBearer(ssl_context=context, use_ssl=use_ssl)
        if self.sasl_mechanism == "GSSAPI":
            return SASLGSSAPI(ssl_context=context, use_ssl=use_ssl)
        password_classes = {
            "PLAIN": SASLPlaintext,
            "SCRAM-SHA-256": SASLScram256,
            "SCRAM-SHA-512": SASLScram512,
        }
        assert self.sasl_plain_password is not None  # check_security requires it
        return password_classes[self.sasl_mechanism](
            username=self.sasl_plain_username or "",
            password=self.sasl_plain_password.get_secret_value(),
            ssl_context=context,
            use_ssl=use_ssl,
        )


def check_security(settings: Settings) -> None:
    """Refuse security settings that clients would disagree on, or that cannot connect."""
    protocol, mechanism = settings.security_protocol, settings.sasl_mechanism
    if protocol in _SASL_PROTOCOLS and mechanism is None:
        raise KafkaSecurityConfigError(
            f"security_protocol {protocol} needs sasl_mechanism (PLAIN, SCRAM-SHA-256, "
            "SCRAM-SHA-512, OAUTHBEARER or GSSAPI)"
        )
    if protocol not in _SASL_PROTOCOLS and mechanism is not None:
        raise KafkaSecurityConfigError(
            f"sasl_mechanism {mechanism} is set but security_protocol is {protocol}: use "
            f"{'SASL_SSL' if protocol == 'SSL' else 'SASL_PLAINTEXT or SASL_SSL'}"
        )
    tls_files = [
        name for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile") if getattr(settings, name)
    ]
    if protocol not in _TLS_PROTOCOLS and tls_files:
        raise KafkaSecurityConfigError(
            f"{', '.join(tls_files)} set but security_protocol {protocol} does not use TLS: "
            "use SSL or SASL_SSL"
        )
    if settings.ssl_keyfile and not settings.ssl_certfile:
        raise KafkaSecurityConfigError("ssl_keyfile needs ssl_certfile (the client certificate)")
    if mechanism in _PASSWORD_MECHANISMS and not (
        settings.sasl_plain_username and settings.sasl_plain_password
    ):
        raise KafkaSecurityConfigError(
            f"sasl_mechanism {mechanism} needs sasl_plain_username and sasl_plain_password"
        )
    if mechanism == "OAUTHBEARER":
        _check_oauth(settings)
    if protocol == "SASL_PLAINTEXT" and mechanism in _SECRET_MECHANISMS:
        _refuse_or_warn(
            settings,
            local=servers_are_loopback(settings.bootstrap_servers),
            problem=f"sasl_mechanism {mechanism} over SASL_PLAINTEXT sends its credentials "
            f"unencrypted to {settings.bootstrap_servers}",
            remedy="use SASL_SSL",
        )


def _refuse_or_warn(settings: Settings, *, local: bool, problem: str, remedy: str) -> None:
    """Credentials in the clear: refused beyond loopback unless allowed; else a loud warning."""
    if not local and not settings.allow_cleartext_credentials:
        raise KafkaSecurityConfigError(
            f"{problem}: {remedy}, or set LLM_STREAM_ALLOW_CLEARTEXT_CREDENTIALS=true if "
            "nobody else can see that network"
        )
    allowed = "" if local else " (allowed by LLM_STREAM_ALLOW_CLEARTEXT_CREDENTIALS)"
    _warn_once(f"{problem}{allowed}: {remedy}")


@functools.lru_cache(maxsize=16)
def _warn_once(message: str) -> None:
    """Once per process and message: every client built checks the same settings again."""
    logger.warning(message)


def _check_oauth(settings: Settings) -> None:
    provider = settings.sasl_oauth_provider
    if provider is None:
        raise KafkaSecurityConfigError(
            "sasl_mechanism OAUTHBEARER needs sasl_oauth_provider (msk_iam or oidc)"
        )
    if provider == "oidc":
        missing = [
            name
            for name in ("sasl_oauth_token_url", "sasl_oauth_client_id", "sasl_oauth_client_secret")
            if not getattr(settings, name)
        ]
        if missing:
            raise KafkaSecurityConfigError(f"sasl_oauth_provider oidc needs {', '.join(missing)}")
        _check_token_url(settings, str(settings.sasl_oauth_token_url))
    elif _aws_region(settings) is None:
        raise KafkaSecurityConfigError(
            "sasl_oauth_provider msk_iam needs sasl_oauth_aws_region (or AWS_REGION)"
        )


def _check_token_url(settings: Settings, url: str) -> None:
    """The client secret goes to the token URL (HTTP Basic): only https keeps it private."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise KafkaSecurityConfigError(f"sasl_oauth_token_url {url} is not an https:// URL")
    if parts.scheme == "http":
        _refuse_or_warn(
            settings,
            local=is_loopback(parts.hostname),
            problem=f"sasl_oauth_token_url {url} sends the OIDC client secret unencrypted",
            remedy="use an https:// token URL",
        )


def _aws_region(settings: Settings) -> str | None:
    return (
        settings.sasl_oauth_aws_region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
    )


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments: bootstrap servers and security, as every client takes them."""
    return kafka_connection(settings).aiokafka_kwargs()


def bounded_consumer_kwargs(settings: Settings) -> dict[str, Any]:
    """A consumer's client arguments with its fetches bounded by the settings: what a process
    buffers while it catches up on a long topic stays the same however long the topic is."""
    return {
        **client_kwargs(settings),
        "fetch_max_bytes": settings.fetch_max_bytes,
        "max_partition_fetch_bytes": settings.fetch_partition_bytes,
    }


#: Each live settings object's connection, by the object's id; an entry goes with its settings.
_CONNECTIONS: dict[int, KafkaConnection] = {}


def kafka_connection(settings: Settings) -> KafkaConnection:
    """The connection every Kafka client made from ``settings`` uses: built on the first call,
    then the same object (a role's broker, consumers, followers and admin client share one)."""
    key = id(settings)
    connection = _CONNECTIONS.get(key)
    if connection is None:
        connection = _CONNECTIONS[key] = _build_connection(settings)
        weakref.finalize(settings, _CONNECTIONS.pop, key, None)
    return connection


def _build_connection(settings: Settings) -> KafkaConnection:
    check_security(settings)
    return KafkaConnection(
        bootstrap_servers=settings.bootstrap_servers,
        security_protocol=settings.security_protocol,
        sasl_mechanism=settings.sasl_mechanism,
        sasl_plain_username=settings.sasl_plain_username,
        sasl_plain_password=settings.sasl_plain_password,
        ssl_context=_ssl_context(settings),
        token_provider=_token_provider(settings),
    )


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """Verifies the broker's certificate chain and host name (aiokafka's defaults); the system
    CAs unless ``ssl_cafile`` names the cluster's own CA."""
    if settings.security_protocol not in _TLS_PROTOCOLS:
        return None
    from aiokafka.helpers import create_ssl_context

    password = settings.ssl_key_password
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
            certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
            keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
            password=password.get_secret_value() if password else None,
        )
    except (OSError, ssl.SSLError) as error:
        raise KafkaSecurityConfigError(
            f"cannot load the TLS files (ssl_cafile={settings.ssl_cafile}, "
            f"ssl_certfile={settings.ssl_certfile}, ssl_keyfile={settings.ssl_keyfile}): "
            f"{getattr(error, 'strerror', None) or error}"
        ) from None
    return context


def _token_provider(settings: Settings) -> Any:
    if settings.sasl_mechanism != "OAUTHBEARER":
        return None
    secret = settings.sasl_oauth_client_secret
    return _shared_token_provider(
        settings.sasl_oauth_provider,
        _aws_region(settings),
        settings.sasl_oauth_token_url,
        settings.sasl_oauth_client_id,
        secret.get_secret_value() if secret else None,
        settings.sasl_oauth_scope,
    )


@functools.lru_cache(maxsize=8)
def _shared_token_provider(
    kind: str | None,
    region: str | None,
    token_url: str | None,
    client_id: str | None,
    client_secret: str | None,
    scope: str | None,
) -> Any:
    """One provider per configuration and process: every client reuses its cached token."""
    from llm_stream.kafka.oauth import MskIamTokenProvider, OidcTokenProvider

    if kind == "msk_iam":
        assert region is not None  # check_security requires it
        return MskIamTokenProvider(region)
    # check_security requires all three.
    assert token_url is not None
    assert client_id is not None
    assert client_secret is not None
    return OidcTokenProvider(token_url, client_id, SecretStr(client_secret), scope)


async def start_client(client: Any, connection: Mapping[str, Any]) -> None:
    """``await client.start()`` for a client built from ``connection`` (aiokafka keyword
    arguments); when it cannot reach the brokers because the TLS handshake fails, raise
    ``KafkaTlsError`` with the handshake's own reason and the setting to change, instead of
    aiokafka's bare "Unable to bootstrap"."""
    try:
        await client.start()
    except KafkaConnectionError as error:
        reason = await tls_failure(connection)
        if reason is None:
            raise
        raise KafkaTlsError(reason) from error


async def tls_failure(connection: Mapping[str, Any], timeout_s: float = 5.0) -> str | None:
    """Why a TLS handshake with the first bootstrap server fails; None when it succeeds, the
    connection does not use TLS, or the server cannot be reached at all."""
    context = connection.get("ssl_context")
    if context is None:
        return None
    first = str(connection["bootstrap_servers"]).split(",")[0].strip()
    host, _, port = first.rpartition(":")
    host = host.strip("[]")
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, int(port), ssl=context, server_hostname=host),
            timeout_s,
        )
        # Under TLS 1.3 a server refuses a client certificate only after the handshake: it
        # closes at once, where a broker would wait for the first request.
        try:
            closed = await asyncio.wait_for(reader.read(1), 0.5) == b""
        except TimeoutError:
            closed = False
        writer.close()
    except ssl.SSLCertVerificationError as error:
        return _verification_advice(first, host, error)
    except ssl.SSLError as error:
        return f"TLS handshake with {first} failed ({error.reason or error}): {_CLIENT_CERT}"
    except (OSError, TimeoutError, ValueError):
        return None
    if closed:
        return f"{first} closed the TLS connection right after the handshake: {_CLIENT_CERT}"
    return None


_CLIENT_CERT = (
    "a broker that requires a client certificate needs ssl_certfile and ssl_keyfile "
    "(LLM_STREAM_SSL_CERTFILE, LLM_STREAM_SSL_KEYFILE), signed by a CA the broker trusts"
)


def _verification_advice(address: str, host: str, error: ssl.SSLCertVerificationError) -> str:
    detail = error.verify_message or str(error)
    prefix = f"TLS to {address}: the broker's certificate was refused ({detail}). "
    if "mismatch" in detail.lower() or "not valid for" in detail.lower():
        return prefix + (
            f"It does not name {host!r}: list the brokers in LLM_STREAM_BOOTSTRAP_SERVERS by a "
            "name their certificate carries (a subject alternative name), or reissue it"
        )
    return prefix + (
        "It is not signed by a CA this client trusts: set ssl_cafile (LLM_STREAM_SSL_CAFILE) "
        "to the PEM file of the CA that signed the brokers' certificates"
    )
