from __future__ import annotations

import subprocess
import sys

import pytest

from llm_stream.cli.main import build_parser, main


def test_help_lists_every_implemented_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    commands = ("broker", "tiny-model", "worker", "aggregator", "submit", "status", "run-batch")
    for command in (*commands, "bench", "gateway"):
        assert f"    {command}" in out


def test_unknown_subcommand_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_broker_defaults_to_the_kafka_port() -> None:
    args = build_parser().parse_args(["broker"])
    assert (args.host, args.port) == ("127.0.0.1", 9092)


def test_console_script_module_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llm_stream", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("llm-stream ")
