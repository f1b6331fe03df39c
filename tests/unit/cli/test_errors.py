"""What stops a command becomes one failure kind, its exit code and a message with a remedy."""

from __future__ import annotations

import io
import logging
import ssl

import orjson
import pydantic
import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
    for_code,
)
from huggingface_hub.errors import HFValidationError

from llm_stream.cli import exit_codes
from llm_stream.cli.errors import (
    INTERRUPTED,
    Failure,
    classify,
    classify_engine_failure,
    report,
)
from llm_stream.kafka.diagnosis import KafkaConnectionLog
from llm_stream.ops.logs import JsonFormatter
from llm_stream.settings import Settings

BOOTSTRAP_FAILURE = "Unable to bootstrap from [('10.0.0.7', 9093, <AddressFamily.AF_INET: 2>)]"


def _log_with(reason: BaseException) -> KafkaConnectionLog:
    """A connection log that heard aiokafka give ``reason`` for one address."""
    log = KafkaConnectionLog()
    record = logging.LogRecord(
        "aiokafka", logging.ERROR, "client.py", 216, 'Unable connect to "%s:%s": %s', None, None
    )
    record.args = ("10.0.0.7", 9093, reason)
    log.emit(record)
    return log


def test_a_broker_not_there_names_the_address_the_setting_and_the_local_broker() -> None:
    failure = classify(KafkaConnectionError(BOOTSTRAP_FAILURE))
    assert failure.code == exit_codes.EXIT_BROKER_UNREACHABLE
    assert "cannot reach Kafka at 10.0.0.7:9093" in failure.message
    assert "LLM_STREAM_BOOTSTRAP_SERVERS" in failure.message
    assert "llm-stream broker" in failure.message


def test_a_refused_tls_handshake_is_told_apart_from_an_absent_broker() -> None:
    reason = ssl.SSLCertVerificationError(1, "certificate verify failed: unable to get issuer")
    failure = classify(KafkaConnectionError(BOOTSTRAP_FAILURE), _log_with(reason))
    assert failure.code == exit_codes.EXIT_BROKER_REFUSED
    assert "refused the TLS handshake" in failure.message
    assert "LLM_STREAM_SSL_CAFILE" in failure.message


def test_a_refused_login_names_the_sasl_settings() -> None:
    reason = SaslAuthenticationFailed("Authentication failed: Invalid username or password")
    failure = classify(KafkaConnectionError(BOOTSTRAP_FAILURE), _log_with(reason))
    assert failure.code == exit_codes.EXIT_BROKER_REFUSED
    assert "refused authentication" in failure.message
    assert "LLM_STREAM_SASL_PLAIN_USERNAME" in failure.message


def test_a_denied_topic_is_a_refusal() -> None:
    failure = classify(TopicAuthorizationFailedError("llm-stream.requests"))
    assert failure.code == exit_codes.EXIT_BROKER_REFUSED
    assert "Grant this principal" in failure.message


@pytest.mark.parametrize(
    "error",
    [
        UnknownTopicOrPartitionError("llm-stream.results"),
        for_code(44)("cannot create topic 'llm-stream.requests': topic creation is disabled"),
    ],
)
def test_a_missing_topic_says_how_to_get_it(error: Exception) -> None:
    failure = classify(error)
    assert failure.code == exit_codes.EXIT_TOPIC_MISSING
    assert "Create the llm-stream topics" in failure.message


def test_a_topic_created_meanwhile_is_no_failure_kind_of_its_own() -> None:
    assert classify(TopicAlreadyExistsError()).code == exit_codes.EXIT_UNEXPECTED


def test_the_cause_is_found_inside_exception_groups_and_chains() -> None:
    try:
        try:
            raise KafkaConnectionError(BOOTSTRAP_FAILURE)
        except KafkaConnectionError as error:
            raise RuntimeError("pipeline stopped early") from error
    except RuntimeError as error:
        group = ExceptionGroup("tasks", [ValueError("other"), error])
    assert classify(group).code == exit_codes.EXIT_BROKER_UNREACHABLE


def test_hub_errors_about_a_model_name_are_a_model_path_failure() -> None:
    error = HFValidationError("Repo id must be in the form 'repo_name' or 'namespace/repo_name'")
    failure = classify(error)
    assert failure.code == exit_codes.EXIT_MODEL_PATH
    assert "config.json" in failure.message


@pytest.mark.parametrize(
    ("text", "remedy"),
    [
        # vLLM 0.32's own messages (kv_cache_utils, config.device, engine.utils) and torch's.
        (
            "ValueError: To serve at least one request with the model's max seq len (8192), "
            "(1.0 GiB KV cache is needed, which is larger than the available KV cache memory "
            "(0.5 GiB). Try increasing `gpu_memory_utilization` ...",
            "--max-model-len",
        ),
        (
            "ValueError: No available memory for the cache blocks. Try increasing "
            "`gpu_memory_utilization` when initializing the engine",
            "--max-model-len",
        ),
        ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "smaller"),
        ("RuntimeError: No CUDA GPUs are available", "CUDA_VISIBLE_DEVICES"),
        ("RuntimeError: Failed to infer device type, please set ...", "CUDA_VISIBLE_DEVICES"),
        (
            "RuntimeError: Engine core initialization failed. See root cause above. "
            "Failed core proc(s): {'EngineCore_DP0': 1}",
            "last ERROR line",
        ),
    ],
)
def test_an_engine_that_fails_to_start_gets_its_reason_in_one_line(text: str, remedy: str) -> None:
    failure = classify_engine_failure(text)
    assert failure is not None
    assert failure.code == exit_codes.EXIT_ENGINE_START
    reason, advice = failure.message.split("\n")
    assert reason.startswith("the vLLM engine failed to start: ")
    assert len(reason) < 250
    assert remedy in advice


def test_an_engine_failure_is_found_in_the_exception_text() -> None:
    error = RuntimeError("Engine core initialization failed. See root cause above.")
    assert classify(error).code == exit_codes.EXIT_ENGINE_START


def test_an_unknown_error_is_one_line_pointing_at_debug() -> None:
    failure = classify(ZeroDivisionError("division by zero"))
    assert failure.code == exit_codes.EXIT_UNEXPECTED
    assert failure.message == (
        "ZeroDivisionError: division by zero\nRerun with --debug for the traceback."
    )


def test_ctrl_c_is_interrupted() -> None:
    assert classify(KeyboardInterrupt()) is INTERRUPTED
    assert INTERRUPTED.code == 130


def test_invalid_settings_name_their_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLM_STREAM_TOPIC_PARTITIONS", "zero")
    with pytest.raises(pydantic.ValidationError) as raised:
        Settings()
    failure = classify(raised.value)
    assert failure.code == exit_codes.EXIT_USAGE
    assert "LLM_STREAM_TOPIC_PARTITIONS" in failure.message


def test_a_role_logging_json_reports_the_failure_as_a_structured_record() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        failure = Failure("broker_unreachable", 10, "cannot reach Kafka at 127.0.0.1:1")
        report(failure, KafkaConnectionError("x"), debug=False)
    finally:
        root.removeHandler(handler)
    record = orjson.loads(stream.getvalue().splitlines()[-1])
    assert record["level"] == "ERROR"
    assert record["message"] == "cannot reach Kafka at 127.0.0.1:1"
    assert (record["error_kind"], record["exit_code"]) == ("broker_unreachable", 10)
    assert "exception" not in record


def test_vllm_refusing_its_engine_flags_is_an_engine_start_failure_in_its_words() -> None:
    class ModelConfig(pydantic.BaseModel):  # vLLM validates its configs with pydantic
        max_model_len: int

        @pydantic.field_validator("max_model_len")
        @classmethod
        def _fits(cls, value: int) -> int:
            raise ValueError(f"User-specified max_model_len ({value}) is greater than 512")

    with pytest.raises(pydantic.ValidationError) as raised:
        ModelConfig(max_model_len=100_000)
    failure = classify(raised.value)
    assert failure.code == exit_codes.EXIT_ENGINE_START
    assert failure.message.startswith(
        "vLLM refused the engine flags (ModelConfig): User-specified max_model_len (100000) "
        "is greater than 512\n"
    )
