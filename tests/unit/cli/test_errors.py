"""What stops a command becomes one failure kind, its exit code and a message with a remedy."""

from __future__ import annotations

import io
import logging
import ssl
from pathlib import Path

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
    InputFileError,
    classify,
    classify_engine_failure,
    report,
)
from llm_stream.cli.file_checks import check_input_file, check_output_dir, check_output_file
from llm_stream.cli.main import build_parser
from llm_stream.engine.model_path import ModelPathError, check_model_path, model_flag
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


def test_every_failure_kind_has_its_own_exit_code() -> None:
    codes = [
        exit_codes.EXIT_NO_BATCH,
        exit_codes.EXIT_USAGE,
        exit_codes.EXIT_NOT_TERMINAL,
        *exit_codes.EXIT_CODES.values(),
        exit_codes.EXIT_TOO_LATE_TO_CANCEL,
        exit_codes.EXIT_UNEXPECTED,
        exit_codes.EXIT_BROKER_UNREACHABLE,
        exit_codes.EXIT_BROKER_REFUSED,
        exit_codes.EXIT_TOPIC_MISSING,
        exit_codes.EXIT_MODEL_PATH,
        exit_codes.EXIT_ENGINE_START,
        exit_codes.EXIT_INPUT_FILE,
        exit_codes.EXIT_OUTPUT_NOT_WRITABLE,
        exit_codes.EXIT_INTERRUPTED,
    ]
    assert len(set(codes)) == len(codes)


def test_every_subcommand_documents_the_failure_exit_codes() -> None:
    parser = build_parser()
    assert exit_codes.FAILURE_EPILOG in parser.format_help()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    assert isinstance(subcommands, dict)
    for name, subparser in subcommands.items():
        if name in ("worker", "run-batch"):  # vLLM's parser, with the epilog of its own
            continue
        assert exit_codes.FAILURE_EPILOG in subparser.format_help(), name
        assert "--debug" in subparser.format_help(), name


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


def test_the_model_flag_is_read_in_both_forms() -> None:
    assert model_flag(["--dtype", "float32", "--model", "/m"]) == "/m"
    assert model_flag(["--model=/m", "--seed", "0"]) == "/m"
    assert model_flag(["--seed", "0"]) is None


def test_a_model_path_must_be_a_model_directory(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "mistral").mkdir()
    (tmp_path / "mistral" / "params.json").write_text("{}")
    (tmp_path / "weights.gguf").write_bytes(b"GGUF")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    for loadable in ("model", "mistral", "weights.gguf"):
        check_model_path(str(tmp_path / loadable))
    for name, says in (
        ("empty", "without config.json"),
        ("notes.txt", "is a file"),
        ("absent", "no such directory"),
    ):
        with pytest.raises(ModelPathError, match=says):
            check_model_path(str(tmp_path / name))


def test_a_name_that_may_be_a_hub_id_is_left_to_vllm() -> None:
    check_model_path("Qwen/Qwen3-0.6B")
    check_model_path("gpt2")
    for not_an_id in ("a/b/c", "./absent", "has space/model"):
        with pytest.raises(ModelPathError, match="not a Hugging Face model id"):
            check_model_path(not_an_id)


def test_an_unreadable_input_file_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Permission bits do not stop root, who runs CI: the refusal is the filesystem's answer.
    path = tmp_path / "in.jsonl"
    path.write_text("{}\n")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(InputFileError, match=r"cannot read input file .*Permission denied"):
        check_input_file(path)


def test_an_empty_input_file_is_refused_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.touch()
    with pytest.raises(InputFileError, match="is empty"):
        check_input_file(path)
    check_input_file(path, allow_empty=True)


def test_an_output_place_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(Exception, match="cannot write to output directory"):
        check_output_dir(blocker / "batches")
    with pytest.raises(Exception, match="not a writable directory"):
        check_output_file(tmp_path / "absent" / "out.jsonl")
    with pytest.raises(Exception, match="is a directory"):
        check_output_file(tmp_path)
    check_output_dir(tmp_path / "new" / "batches")
    check_output_file(tmp_path / "out.jsonl")
    assert list((tmp_path / "new" / "batches").iterdir()) == []


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
