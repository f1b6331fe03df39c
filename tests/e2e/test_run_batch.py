"""run-batch, the separate-process pipeline, and vLLM's own run-batch on the same files."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from llm_stream.broker.embedded import EmbeddedBroker
from llm_stream.files.store import LocalFileStore
from tests.processes import TINY_ENGINE_FLAGS, running, service_env, worker_args

pytestmark = [pytest.mark.engine, pytest.mark.broker]

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _comparable(line: dict[str, Any]) -> dict[str, Any]:
    """A result line without what differs between runs: ids and timestamps."""
    response = line["response"]
    body = dict(response["body"])
    for volatile in ("id", "created", "system_fingerprint"):
        body.pop(volatile, None)
    return {"custom_id": line["custom_id"], "status": response["status_code"], "body": body}


def _run_batch(
    model: str, source: Path, target: Path, *flags: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "llm_stream", "run-batch"),
            *("-i", str(source), "-o", str(target), "--model", model),
            *TINY_ENGINE_FLAGS,
            *flags,
        ],
        env=service_env({}),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _chat(content: str, **params: Any) -> dict[str, Any]:
    return {"model": "tiny-llama", "messages": [{"role": "user", "content": content}], **params}


#: Lines both run-batches answer with an error: the same status codes are expected.
ERROR_LINES = [
    {
        "custom_id": "unknown-model",
        "url": "/v1/chat/completions",
        "body": {**_chat("hi"), "model": "gpt-x"},
    },
    {"custom_id": "too-long", "url": "/v1/chat/completions", "body": _chat("word " * 400)},
    {"custom_id": "streaming", "url": "/v1/chat/completions", "body": _chat("hi", stream=True)},
    {"custom_id": "unknown-url", "url": "/v1/unknown", "body": _chat("hi")},
]


@pytest.fixture(scope="module")
def conformance_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docs/examples/chat.jsonl plus error lines that vLLM's run-batch answers too."""
    path = tmp_path_factory.mktemp("input") / "conformance.jsonl"
    lines = [*(EXAMPLES / "chat.jsonl").read_bytes().splitlines()]
    lines += [orjson.dumps({"method": "POST", **line}) for line in ERROR_LINES]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture(scope="module")
def chat_run_batch(
    tiny_model: str, tmp_path_factory: pytest.TempPathFactory, conformance_file: Path
) -> Path:
    """Our run-batch's output for the conformance file."""
    target = tmp_path_factory.mktemp("ours") / "out.jsonl"
    result = _run_batch(tiny_model, conformance_file, target)
    assert result.returncode == 0, result.stderr[-3000:]
    return target


def test_the_readme_example_answers_every_line_in_input_order(
    tiny_model: str, tmp_path: Path
) -> None:
    target = tmp_path / "out.jsonl"
    result = _run_batch(tiny_model, EXAMPLES / "demo.jsonl", target)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "run-batch: 100%" in result.stderr  # the progress bar
    lines = _lines(target)
    statuses = [(line["custom_id"], line["response"]["status_code"]) for line in lines]
    assert statuses == [
        ("chat-1", 200),
        ("chat-2", 200),
        ("chat-3", 200),
        ("completion-1", 200),
        ("completion-2", 200),
        ("response-1", 200),
        ("bad-no-messages", 400),
        ("bad-unknown-model", 404),
        ("", 400),  # not JSON: no custom_id to answer under
    ]
    assert len(lines[4]["response"]["body"]["choices"]) == 2
    # vLLM run-batch's shape: a failed line's error in `error`, its body null.
    assert lines[-1]["response"]["body"] is None
    assert "not valid JSON" in lines[-1]["error"]["error"]["message"]
    from vllm.entrypoints.launchers.run_batch import BatchRequestOutput

    response = lines[5]["response"]["body"]
    assert response["object"] == "response"
    assert response["status"] in ("completed", "incomplete")  # incomplete: max_output_tokens
    assert 0 < response["usage"]["output_tokens"] <= 16
    assert response["output"][-1]["content"][0]["type"] == "output_text"
    for line in lines:
        if line["custom_id"].startswith(("completion-", "response-")):
            continue  # vLLM's run-batch has neither endpoint: its model has no such body
        BatchRequestOutput.model_validate(line)


@pytest.fixture
def separate_processes(tiny_model: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Broker, worker and aggregator as separate processes, as in production."""
    with EmbeddedBroker() as broker:
        settings = {
            "bootstrap_servers": broker.bootstrap_servers,
            "output_dir": str(tmp_path / "batches"),
        }
        with (
            running(worker_args(tiny_model), settings, tmp_path / "worker.log"),
            running(["aggregator"], settings, tmp_path / "aggregator.log"),
        ):
            yield settings


def test_separate_processes_write_what_run_batch_writes(
    separate_processes: dict[str, str], chat_run_batch: Path
) -> None:
    env = service_env(separate_processes)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "llm_stream", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, check=False)

    submitted = cli("submit", str(EXAMPLES / "chat.jsonl"), "--metadata", "team=e2e")
    assert submitted.returncode == 0, submitted.stderr
    batch_id = submitted.stdout.strip()
    status = cli("status", batch_id, "--wait", "300")
    assert status.returncode == 0, status.stderr
    batch = orjson.loads(status.stdout)
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 4, "completed": 4, "failed": 0}
    assert batch["metadata"] == {"team": "e2e"}
    assert batch["output_file_id"] == f"file-{batch_id}-output"
    store = LocalFileStore(Path(separate_processes["output_dir"]))
    output = [orjson.loads(line) for line in store.read(batch["output_file_id"])]
    ours = sorted((_comparable(line) for line in output), key=lambda c: c["custom_id"])
    chat_ids = {line["custom_id"] for line in output}
    reference = [
        _comparable(line) for line in _lines(chat_run_batch) if line["custom_id"] in chat_ids
    ]
    assert ours == sorted(reference, key=lambda c: c["custom_id"])


def test_run_batch_conforms_to_vllms_run_batch(
    tiny_model: str, chat_run_batch: Path, conformance_file: Path, tmp_path: Path
) -> None:
    """Same status codes and, at temperature 0, the same message contents as vLLM's; every
    line of ours validates as vLLM's own BatchRequestOutput."""
    from vllm.entrypoints.launchers.run_batch import BatchRequestOutput

    reference = tmp_path / "vllm.jsonl"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "vllm.entrypoints.openai.run_batch"),
            *("-i", str(conformance_file), "-o", str(reference), "--model", tiny_model),
            *TINY_ENGINE_FLAGS,
        ],
        env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    theirs = {line["custom_id"]: line for line in _lines(reference)}
    ours = {line["custom_id"]: line for line in _lines(chat_run_batch)}
    assert list(ours) == list(theirs)
    for custom_id, line in ours.items():
        BatchRequestOutput.model_validate(line)
        assert line["response"]["status_code"] == theirs[custom_id]["response"]["status_code"]
        if line["response"]["status_code"] != 200:
            assert line["response"]["body"] is None
            assert line["error"]
            continue
        our_choice = line["response"]["body"]["choices"][0]["message"]["content"]
        their_choice = theirs[custom_id]["response"]["body"]["choices"][0]["message"]["content"]
        assert our_choice == their_choice
    assert {cid for cid, line in ours.items() if line["response"]["status_code"] != 200} == {
        line["custom_id"] for line in ERROR_LINES
    }


def test_an_engine_that_fails_while_the_batch_waits_is_the_error_reported(
    tiny_model: str, tmp_path: Path
) -> None:
    """run-batch publishes its batch and joins its groups while vLLM loads: when the engine
    then fails to start, that failure (exit 14, its cause) is what the user reads, not the
    worker stopping for want of an engine, and no line is answered in the engine's name."""
    source = tmp_path / "in.jsonl"
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions"}
    source.write_bytes(orjson.dumps({**line, "body": _chat("hello")}) + b"\n")
    target = tmp_path / "out.jsonl"
    done = _run_batch(tiny_model, source, target, "--num-gpu-blocks-override", "1")
    assert done.returncode == 14, done.stderr[-2000:]
    assert "the vLLM engine failed to start" in done.stderr
    assert "No available memory for the cache blocks" in done.stderr
    assert not target.exists()
