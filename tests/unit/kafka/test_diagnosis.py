"""``diagnose``: which Kafka problem an exception stands for, by its type, and a message that
names the address or setting to change; None for an error that is not Kafka's."""

from __future__ import annotations

import logging
import ssl

import pytest
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)

from llm_stream.kafka.connection import KafkaSecurityConfigError, KafkaTlsError
from llm_stream.kafka.diagnosis import (
    KafkaConnectionLog,
    ProblemKind,
    diagnose,
    first_line,
)

BOOTSTRAP_FAILURE = "Unable to bootstrap from [('10.0.0.7', 9093, <AddressFamily.AF_INET: 2>)]"


def _log_with(
    reason: BaseException, host: str = "10.0.0.8", port: int = 9094
) -> KafkaConnectionLog:
    """A connection log that heard aiokafka give ``reason`` for one address."""
    log = KafkaConnectionLog()
    record = logging.LogRecord(
        "aiokafka", logging.ERROR, "client.py", 216, 'Unable connect to "%s:%s": %s', None, None
    )
    record.args = ("10.0.0.8", 9094, reason)
    log.emit(record)
    return log


EXAMPLES: list[tuple[BaseException, ProblemKind, str]] = [
    (KafkaSecurityConfigError("sasl_mechanism PLAIN is set"), ProblemKind.SETTINGS, "LLM_STREAM_*"),
    (KafkaTlsError("set LLM_STREAM_SSL_CAFILE"), ProblemKind.REFUSED, "LLM_STREAM_SSL_CAFILE"),
    (ssl.SSLError(1, "wrong version number"), ProblemKind.REFUSED, "TLS handshake"),
    (SaslAuthenticationFailed("bad password"), ProblemKind.REFUSED, "refused authentication"),
    (GroupAuthorizationFailedError("workers"), ProblemKind.REFUSED, "Grant this principal"),
    (KafkaConnectionError(BOOTSTRAP_FAILURE), ProblemKind.UNREACHABLE, "10.0.0.7:9093"),
    (UnknownTopicOrPartitionError("llm-stream.results"), ProblemKind.TOPIC_MISSING, "Create"),
    (for_code(44)("cannot create topic 'x': disabled"), ProblemKind.TOPIC_MISSING, "Create"),
]


@pytest.mark.parametrize(
    ("error", "kind", "says"), EXAMPLES, ids=[type(e).__name__ for e, _, _ in EXAMPLES]
)
def test_each_kafka_error_type_is_diagnosed_as_its_problem(
    error: BaseException, kind: ProblemKind, says: str
) -> None:
    problem = diagnose(error)
    assert problem is not None
    assert problem.kind is kind
    assert says in problem.message


def test_the_examples_cover_every_problem_kind() -> None:
    assert {kind for _, kind, _ in EXAMPLES} == set(ProblemKind)


@pytest.mark.parametrize(
    "error",
    [ValueError("not Kafka's"), ZeroDivisionError(), TopicAlreadyExistsError()],
    ids=["ValueError", "ZeroDivisionError", "a Kafka error with no problem kind"],
)
def test_an_error_that_is_no_kafka_problem_is_none(error: BaseException) -> None:
    assert diagnose(error) is None


def test_a_tls_error_keeps_its_own_message_though_it_is_a_connection_error() -> None:
    """``KafkaTlsError`` subclasses aiokafka's connection error: it must not read as absent."""
    problem = diagnose(KafkaTlsError("the broker's certificate is for another host"))
    assert problem is not None
    assert problem.kind is ProblemKind.REFUSED
    assert problem.message.endswith("the broker's certificate is for another host")
    assert "cannot reach" not in problem.message


def test_a_refusal_aiokafka_only_logged_tells_a_refused_handshake_from_an_absent_broker() -> None:
    reason = ssl.SSLCertVerificationError(1, "certificate verify failed")
    problem = diagnose(KafkaConnectionError("Unable to bootstrap"), _log_with(reason))
    assert problem is not None
    assert problem.kind is ProblemKind.REFUSED
    assert "Kafka at 10.0.0.8:9094 refused the TLS handshake" in problem.message


def test_an_absent_broker_is_named_by_the_logged_address_else_by_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logged = diagnose(KafkaConnectionError("Unable to bootstrap"), _log_with(OSError("refused")))
    assert logged is not None
    assert "cannot reach Kafka at 10.0.0.8:9094" in logged.message
    monkeypatch.setenv("LLM_STREAM_BOOTSTRAP_SERVERS", "kafka.example:9092")
    unlogged = diagnose(KafkaConnectionError("Unable to bootstrap"))
    assert unlogged is not None
    assert "cannot reach Kafka at kafka.example:9092" in unlogged.message


def test_the_connection_log_keeps_only_aiokafkas_connection_failures() -> None:
    log = KafkaConnectionLog()
    other = logging.LogRecord("aiokafka", logging.ERROR, "x.py", 1, "Unexpected %s", ("x",), None)
    log.emit(other)
    assert (log.address, log.reason) == (None, None)
    reason = OSError("connection refused")
    assert _log_with(reason).reason is reason


def test_the_connection_log_listens_on_aiokafkas_logger_until_removed() -> None:
    log = KafkaConnectionLog.install()
    try:
        logging.getLogger("aiokafka.conn").error(
            'Unable connect to "%s:%s": %s', "10.0.0.9", 9092, OSError("refused")
        )
        assert log.address == "10.0.0.9:9092"
    finally:
        log.remove()
    assert log not in logging.getLogger("aiokafka").handlers


def test_first_line_is_one_bounded_line_or_the_errors_type() -> None:
    assert first_line(ValueError("first\nsecond")) == "first"
    assert first_line(ValueError("x" * 300), limit=10) == "xxxxxxx..."
    assert first_line(ValueError("   ")) == "ValueError"
