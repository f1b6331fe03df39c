"""Why a Kafka client could not do its work, in words a person can act on.

aiokafka hides why it could not connect (``KafkaConnectionError: Unable to bootstrap``) and
only logs the reason per address; ``KafkaConnectionLog`` keeps those reasons, so a refused TLS
handshake or SASL login is told apart from a broker that is not there. ``diagnose`` matches
aiokafka's and ``kafka.connection``'s exception types; the command line turns the problem's
kind into an exit code.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
from dataclasses import dataclass
from enum import StrEnum

#: What ``kafka.topics`` says of a topic it could not create (aiokafka's error for the
#: broker's code, whichever it is, carries it).
CANNOT_CREATE_TOPIC = "cannot create topic"
BOOTSTRAP_SETTING = "--bootstrap-servers / LLM_STREAM_BOOTSTRAP_SERVERS"


class ProblemKind(StrEnum):
    UNREACHABLE = "broker_unreachable"
    REFUSED = "broker_refused"
    TOPIC_MISSING = "topic_missing"
    SETTINGS = "settings"


@dataclass(frozen=True)
class KafkaProblem:
    kind: ProblemKind
    message: str


class KafkaConnectionLog(logging.Handler):
    """Keeps the last reason aiokafka logged for failing to connect to an address."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.address: str | None = None
        self.reason: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        # aiokafka.client: log.error('Unable connect to "%s:%s": %s', host, port, err)
        args = record.args
        if str(record.msg).startswith("Unable connect to") and isinstance(args, tuple):
            self.address = ":".join(str(arg) for arg in args[:2])
            self.reason = args[-1] if isinstance(args[-1], BaseException) else None

    @classmethod
    def install(cls) -> KafkaConnectionLog:
        """Listen on aiokafka's logger; a command with no logging of its own then prints none
        of aiokafka's lines (its reasons come back in the problem's message instead)."""
        log = cls()
        logging.getLogger("aiokafka").addHandler(log)
        return log

    def remove(self) -> None:
        logging.getLogger("aiokafka").removeHandler(self)


def first_line(error: BaseException, limit: int = 200) -> str:
    """The error's message in one line of at most ``limit`` characters."""
    text = str(error).strip() or type(error).__name__
    line = text.splitlines()[0]
    return line if len(line) <= limit else f"{line[: limit - 3]}..."


def _address(error: BaseException, log: KafkaConnectionLog | None) -> str:
    """The addresses that were tried: from aiokafka's message, its log, or the setting."""
    hosts = re.findall(r"\('([^']*)', (\d+)", str(error))
    if hosts:
        return ",".join(f"{host}:{port}" for host, port in hosts)
    if log is not None and log.address is not None:
        return log.address
    return os.environ.get("LLM_STREAM_BOOTSTRAP_SERVERS", "the bootstrap servers")


def _tls(address: str, reason: BaseException) -> KafkaProblem:
    return KafkaProblem(
        ProblemKind.REFUSED,
        f"Kafka at {address} refused the TLS handshake ({first_line(reason)}). Check "
        "LLM_STREAM_SECURITY_PROTOCOL and LLM_STREAM_SSL_CAFILE / _SSL_CERTFILE / _SSL_KEYFILE.",
    )


def _authentication(address: str, reason: BaseException) -> KafkaProblem:
    return KafkaProblem(
        ProblemKind.REFUSED,
        f"Kafka at {address} refused authentication ({first_line(reason)}). Check "
        "LLM_STREAM_SASL_MECHANISM, LLM_STREAM_SASL_PLAIN_USERNAME and _SASL_PLAIN_PASSWORD.",
    )


def _connection(error: BaseException, log: KafkaConnectionLog | None) -> KafkaProblem:
    """No connection: a TLS or SASL refusal aiokafka logged, else a broker not there."""
    from aiokafka import errors

    reason = log.reason if log is not None else None
    address = _address(error, log)
    if isinstance(error, ssl.SSLError) or isinstance(reason, ssl.SSLError):
        return _tls(address, reason if isinstance(reason, ssl.SSLError) else error)
    if isinstance(reason, _authentication_errors(errors)):
        return _authentication(address, reason)
    return KafkaProblem(
        ProblemKind.UNREACHABLE,
        f"cannot reach Kafka at {address} ({BOOTSTRAP_SETTING}). "
        "Start a local broker with `llm-stream broker`, or point at yours.",
    )


def _authentication_errors(errors: object) -> tuple[type[BaseException], ...]:
    return tuple(
        getattr(errors, name)
        for name in (
            "SaslAuthenticationFailed",
            "UnsupportedSaslMechanismError",
            "IllegalSaslStateError",
            "AuthenticationFailedError",
            "AuthenticationMethodNotSupported",
        )
    )


def diagnose(error: BaseException, log: KafkaConnectionLog | None = None) -> KafkaProblem | None:
    """The Kafka problem ``error`` stands for, or None when it is none of Kafka's."""
    from aiokafka import errors

    from llm_stream.kafka.connection import KafkaSecurityConfigError, KafkaTlsError

    if isinstance(error, KafkaSecurityConfigError):
        message = f"Kafka security settings: {first_line(error)}. Fix the LLM_STREAM_* values."
        return KafkaProblem(ProblemKind.SETTINGS, message)
    if isinstance(error, KafkaTlsError):  # its message already says which setting to change
        return KafkaProblem(ProblemKind.REFUSED, first_line(error, 400))
    if isinstance(error, errors.KafkaConnectionError | ssl.SSLError):
        return _connection(error, log)
    if isinstance(error, _authentication_errors(errors)):
        return _authentication(_address(error, log), error)
    authorization = (
        errors.TopicAuthorizationFailedError,
        errors.GroupAuthorizationFailedError,
        errors.ClusterAuthorizationFailedError,
        errors.TransactionalIdAuthorizationFailed,
    )
    if isinstance(error, authorization):
        return KafkaProblem(
            ProblemKind.REFUSED,
            f"Kafka refused access ({first_line(error)}). Grant this principal the llm-stream "
            "topics and consumer groups, or check LLM_STREAM_*_TOPIC and --group-id.",
        )
    cannot_create = isinstance(error, errors.KafkaError) and CANNOT_CREATE_TOPIC in str(error)
    if isinstance(error, errors.UnknownTopicOrPartitionError) or cannot_create:
        return KafkaProblem(
            ProblemKind.TOPIC_MISSING,
            f"a Kafka topic is missing ({first_line(error)}). Create the llm-stream topics, "
            "allow this principal to create topics, or set LLM_STREAM_*_TOPIC to existing ones.",
        )
    return None
