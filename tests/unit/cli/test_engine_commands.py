"""``run-batch`` and ``worker`` parse vLLM's own flags, and run-batch checks its local files
before the engine's minutes of start-up; URLs are left to the run (no engine is started here)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from llm_stream.cli import engine_commands
from llm_stream.cli.errors import InputFileError, OutputNotWritableError
from llm_stream.ops import process
from llm_stream.run_batch import main as run_batch_main
from llm_stream.settings import Settings
from llm_stream.worker import app as worker_app


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[argparse.Namespace]:
    """The parsed arguments each run-batch would run with (none runs)."""
    seen: list[argparse.Namespace] = []

    def run(args: argparse.Namespace) -> int:
        seen.append(args)
        return 0

    monkeypatch.setattr(run_batch_main, "run", run)
    return seen


def _argv(source: str, target: str) -> list[str]:
    return ["-i", source, "-o", target, "--model", "m"]


def test_run_batch_runs_with_vllms_flags_once_its_files_are_fine(
    runs: list[argparse.Namespace], tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("{}\n")
    argv = [*_argv(str(source), str(tmp_path / "out.jsonl")), "--max-in-flight", "8"]
    assert engine_commands.run_batch(argv) == 0
    [args] = runs
    assert (args.input_file, args.model, args.max_in_flight) == (str(source), "m", 8)


def test_run_batch_accepts_an_empty_input_file_as_vllms_does(
    runs: list[argparse.Namespace], tmp_path: Path
) -> None:
    (tmp_path / "in.jsonl").touch()
    assert engine_commands.run_batch(_argv(str(tmp_path / "in.jsonl"), str(tmp_path / "o"))) == 0
    assert len(runs) == 1


def test_run_batch_refuses_a_missing_input_or_an_unwritable_output_before_running(
    runs: list[argparse.Namespace], tmp_path: Path
) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        engine_commands.run_batch(_argv(str(tmp_path / "absent.jsonl"), str(tmp_path / "o")))
    (tmp_path / "in.jsonl").write_text("{}\n")
    with pytest.raises(OutputNotWritableError, match="is a directory"):
        engine_commands.run_batch(_argv(str(tmp_path / "in.jsonl"), str(tmp_path)))
    assert runs == []


def test_run_batch_leaves_urls_to_the_run(runs: list[argparse.Namespace]) -> None:
    argv = _argv("https://files.example/in.jsonl", "https://files.example/out.jsonl")
    assert engine_commands.run_batch(argv) == 0
    assert runs[0].output_file == "https://files.example/out.jsonl"


def test_the_worker_serves_with_the_settings_and_engine_flags_it_was_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served: list[tuple[Settings, Any]] = []

    async def serve(settings: Settings, engine_args: Any) -> int:
        served.append((settings, engine_args))
        return 0

    monkeypatch.setattr(worker_app, "serve_worker", serve)
    monkeypatch.setattr(process, "start_process", lambda *args: None)
    argv = ["--model", "m", "--bootstrap-servers", "kafka:9092", "--max-num-seqs", "3"]
    assert engine_commands.run_worker(argv) == 0
    [(settings, engine_args)] = served
    assert settings.bootstrap_servers == "kafka:9092"
    assert (engine_args.model, engine_args.max_num_seqs) == ("m", 3)
