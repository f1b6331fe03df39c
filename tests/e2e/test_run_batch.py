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

from llm_stream.cli.embedded_broker import EmbeddedBroker
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


def _run_batch(model: str, source: Path, target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "llm_stream", "run-batch"),
            *("-i", str(source), "-o", str(target), "--model", model),
            *TINY_ENGINE_FLAGS,
        ],
        env=service_env({}),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def chat_run_batch(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our run-batch's output for docs/examples/chat.jsonl."""
    target = tmp_path_factory.mktemp("ours") / "out.jsonl"
    result = _run_batch(tiny_model, EXAMPLES / "chat.jsonl", target)
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
        ("bad-no-messages", 400),
        ("bad-unknown-model", 404),
        (None, 400),
    ]
    assert len(lines[4]["response"]["body"]["choices"]) == 2
    assert "not valid JSON" in lines[-1]["response"]["body"]["error"]["message"]


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
    reference = [_comparable(line) for line in _lines(chat_run_batch)]
    assert ours == sorted(reference, key=lambda c: c["custom_id"])


def test_run_batch_conforms_to_vllms_run_batch(
    tiny_model: str, chat_run_batch: Path, tmp_path: Path
) -> None:
    """Same status codes and, at temperature 0, the same message contents as vLLM's."""
    reference = tmp_path / "vllm.jsonl"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "vllm.entrypoints.openai.run_batch"),
            *("-i", str(EXAMPLES / "chat.jsonl"), "-o", str(reference), "--model", tiny_model),
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
        assert line["response"]["status_code"] == theirs[custom_id]["response"]["status_code"]
        our_choice = line["response"]["body"]["choices"][0]["message"]["content"]
        their_choice = theirs[custom_id]["response"]["body"]["choices"][0]["message"]["content"]
        assert our_choice == their_choice
