"""The console script as a user meets it: each failure is one or two lines on stderr naming the
cause and the remedy, with its own exit code and no traceback (unless ``--debug``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import orjson
import psutil
import pytest

from llm_stream.cli import exit_codes
from llm_stream.network import free_port

pytestmark = pytest.mark.broker

LLM_STREAM = str(Path(sys.executable).with_name("llm-stream"))
NO_BROKER = "127.0.0.1:1"
REQUEST = {
    "custom_id": "a",
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
}


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The user's environment without LLM_STREAM_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_STREAM_")}
    return {**env, **(extra or {})}


def _run(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LLM_STREAM, *args], env=_env(env), capture_output=True, text=True, timeout=timeout
    )


def _assert_explained(result: subprocess.CompletedProcess[str], code: int, *phrases: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def _topics(name: str) -> dict[str, str]:
    """Settings that give a test topics and groups of its own on the shared broker."""
    return {
        f"LLM_STREAM_{field}": f"{name}.{suffix}"
        for field, suffix in (
            ("REQUESTS_TOPIC", "requests"),
            ("RESULTS_TOPIC", "results"),
            ("BATCHES_TOPIC", "batches"),
            ("BATCH_STATUS_TOPIC", "status"),
            ("DEAD_LETTER_TOPIC", "dead-letter"),
            ("AGGREGATOR_GROUP_ID", "aggregators"),
        )
    }


@pytest.fixture
def one_request(tmp_path: Path) -> Path:
    path = tmp_path / "one.jsonl"
    path.write_bytes(orjson.dumps(REQUEST) + b"\n")
    return path


@pytest.mark.parametrize("command", ["submit", "status", "cancel", "aggregator", "gateway"])
def test_no_broker_names_the_address_the_setting_and_the_local_broker(
    command: str, one_request: Path, tmp_path: Path
) -> None:
    args = {
        "submit": [str(one_request)],
        "status": ["batch_1"],
        "cancel": ["batch_1"],
        "aggregator": ["--output-dir", str(tmp_path / "out")],
        "gateway": ["--output-dir", str(tmp_path / "out"), "--port", str(free_port())],
    }[command]
    result = _run(command, *args, "--bootstrap-servers", NO_BROKER)
    _assert_explained(
        result,
        exit_codes.EXIT_BROKER_UNREACHABLE,
        f"cannot reach Kafka at {NO_BROKER}",
        "LLM_STREAM_BOOTSTRAP_SERVERS",
        "llm-stream broker",
    )
    assert "Unclosed" not in result.stderr


def test_a_worker_with_no_broker_stops_before_its_engine_starts(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")  # never read: Kafka is checked first
    result = _run("worker", "--model", str(model), "--bootstrap-servers", NO_BROKER, timeout=120)
    _assert_explained(
        result, exit_codes.EXIT_BROKER_UNREACHABLE, f"cannot reach Kafka at {NO_BROKER}"
    )


def test_a_role_logging_json_reports_the_failure_as_a_structured_line(tmp_path: Path) -> None:
    result = _run(
        "aggregator",
        "--bootstrap-servers",
        NO_BROKER,
        "--output-dir",
        str(tmp_path),
        env={"LLM_STREAM_LOG_FORMAT": "json"},
    )
    assert result.returncode == exit_codes.EXIT_BROKER_UNREACHABLE
    records = [orjson.loads(line) for line in result.stderr.splitlines()]
    [failure] = [r for r in records if r.get("error_kind")]
    assert failure["exit_code"] == exit_codes.EXIT_BROKER_UNREACHABLE
    assert f"cannot reach Kafka at {NO_BROKER}" in failure["message"]
    assert "exception" not in failure


def test_a_role_failing_before_its_logging_starts_still_logs_json() -> None:
    result = _run("worker", "--model", "/nonexistent", env={"LLM_STREAM_LOG_FORMAT": "json"})
    assert result.returncode == exit_codes.EXIT_MODEL_PATH
    [record] = [orjson.loads(line) for line in result.stderr.splitlines()]
    assert record["error_kind"] == "model_path"
    assert "--model /nonexistent" in record["message"]


def test_debug_shows_the_traceback_and_still_the_remedy() -> None:
    for args in (["--debug", "status", "batch_1"], ["status", "batch_1", "--debug"]):
        result = _run(*args, "--bootstrap-servers", NO_BROKER)
        assert result.returncode == exit_codes.EXIT_BROKER_UNREACHABLE
        assert "Traceback" in result.stderr
        assert "KafkaConnectionError" in result.stderr
        assert result.stderr.rstrip().endswith("or point at yours.")
    result = _run(
        "status", "batch_1", "--bootstrap-servers", NO_BROKER, env={"LLM_STREAM_LOG_LEVEL": "DEBUG"}
    )
    assert "Traceback" in result.stderr


@pytest.mark.parametrize("command", ["worker", "run-batch"])
def test_a_model_path_that_is_no_model_fails_in_a_moment(command: str, tmp_path: Path) -> None:
    (tmp_path / "no-config").mkdir()
    extra = ["-i", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")]
    io_args = extra if command == "run-batch" else []
    for model, cause, remedy in (
        ("/nonexistent", "no such directory", "Give a local model directory"),
        (str(tmp_path / "no-config"), "without config.json", "Point --model at the directory"),
    ):
        started = time.monotonic()
        result = _run(command, "--model", model, *io_args)
        elapsed = time.monotonic() - started
        _assert_explained(result, exit_codes.EXIT_MODEL_PATH, f"--model {model}", cause, remedy)
        assert elapsed < 10, f"{elapsed:.1f} s: vLLM was imported or started before the check"


@pytest.mark.parametrize(
    ("content", "phrases"),
    [
        (None, ("does not exist", "Check the path")),
        (b"", ("is empty", "one JSON request per line")),
        (b"hello world\n", ("not valid batch JSONL", "line 1: not valid JSON", "fix these")),
        ("directory", ("is not a file", "Give the path of a JSONL file")),
    ],
)
def test_an_input_file_that_cannot_be_submitted_says_why(
    content: bytes | str | None, phrases: tuple[str, ...], tmp_path: Path
) -> None:
    path = tmp_path / "in.jsonl"
    if content == "directory":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    result = _run("submit", str(path), "--bootstrap-servers", NO_BROKER)
    _assert_explained(result, exit_codes.EXIT_INPUT_FILE, str(path), *phrases)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode bits say")
def test_an_unreadable_input_file_says_so(one_request: Path) -> None:
    one_request.chmod(0)
    result = _run("submit", str(one_request), "--bootstrap-servers", NO_BROKER)
    _assert_explained(result, exit_codes.EXIT_INPUT_FILE, "cannot read", "permissions")


@pytest.mark.parametrize("command", ["status", "cancel"])
def test_an_unknown_batch_id_says_where_it_was_looked_for(
    command: str, kafka_bootstrap: str, unique_name: str
) -> None:
    env = _topics(unique_name)
    result = _run(command, "batch_unknown", "--bootstrap-servers", kafka_bootstrap, env=env)
    _assert_explained(
        result,
        exit_codes.EXIT_NO_BATCH,
        f"no batch 'batch_unknown' on Kafka at {kafka_bootstrap}",
        f"{unique_name}.status",
        "Check the id",
    )
    assert result.stdout == ""


@pytest.mark.parametrize("command", ["aggregator", "gateway"])
def test_an_output_directory_that_cannot_be_written_is_refused_at_start(
    command: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = _run(
        command, "--output-dir", str(blocker / "batches"), "--bootstrap-servers", NO_BROKER
    )
    _assert_explained(
        result,
        exit_codes.EXIT_OUTPUT_NOT_WRITABLE,
        f"cannot write to output directory {blocker / 'batches'}",
        "Give a writable directory",
    )


def _interrupt_once_connected(process: subprocess.Popen[str], port: int) -> tuple[int, str]:
    """SIGINT once the process holds a connection to the broker; its exit code and stderr."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        connections = psutil.Process(process.pid).net_connections(kind="tcp")
        if any(c.raddr and c.raddr.port == port for c in connections):
            break
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    time.sleep(1.0)  # into its steady state
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr


def _start(*args: str, env: Mapping[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [LLM_STREAM, *args],
        env=_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ctrl_c_while_waiting_for_a_batch_stops_cleanly(
    kafka_bootstrap: str, unique_name: str, one_request: Path, tmp_path: Path
) -> None:
    env = {**_topics(unique_name), "LLM_STREAM_OUTPUT_DIR": str(tmp_path / "batches")}
    submitted = _run("submit", str(one_request), "--bootstrap-servers", kafka_bootstrap, env=env)
    assert submitted.returncode == 0, submitted.stderr
    batch_id = submitted.stdout.strip()
    process = _start(
        "status", batch_id, "--wait", "60", "--bootstrap-servers", kafka_bootstrap, env=env
    )
    code, stderr = _interrupt_once_connected(process, int(kafka_bootstrap.rsplit(":", 1)[1]))
    assert code == exit_codes.EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stderr


def test_ctrl_c_stops_a_role_cleanly(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    process = _start(
        "aggregator",
        "--bootstrap-servers",
        kafka_bootstrap,
        "--output-dir",
        str(tmp_path),
        env=_topics(unique_name),
    )
    code, stderr = _interrupt_once_connected(process, int(kafka_bootstrap.rsplit(":", 1)[1]))
    assert code == exit_codes.EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr
    assert "KeyboardInterrupt" not in stderr


@pytest.mark.parametrize("command", ["broker", "gateway"])
def test_a_port_already_taken_is_refused_before_serving(command: str, tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        gateway = ["--output-dir", str(tmp_path), "--bootstrap-servers", NO_BROKER]
        result = _run(command, "--port", str(port), *(gateway if command == "gateway" else []))
    _assert_explained(
        result, exit_codes.EXIT_USAGE, f"cannot listen on 127.0.0.1:{port}", "choose another --port"
    )


def test_ctrl_c_stops_the_embedded_broker_cleanly() -> None:
    port = free_port()
    process = _start("broker", "--port", str(port), env={})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == exit_codes.EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr
