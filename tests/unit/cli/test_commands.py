"""What the subcommands do with their flags before a role runs, and the code a role's process
exits with. (``status``, ``gateway``: test_status_command.py, test_gateway_command.py.)"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from llm_stream.aggregator import app as aggregator_app
from llm_stream.cli.exit_codes import EXIT_INTERRUPTED, EXIT_OUTPUT_NOT_WRITABLE
from llm_stream.cli.main import main
from llm_stream.ops import process
from llm_stream.settings import Settings


@pytest.fixture(autouse=True)
def _quiet_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """No logging or tracing set up for the test process; Ctrl-C state of its own."""
    monkeypatch.setattr(process, "start_process", lambda *args: None)
    monkeypatch.setattr(process, "_INTERRUPTED", threading.Event())


def test_the_aggregator_refuses_an_output_directory_it_cannot_write_before_it_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def serve(settings: Settings) -> int:
        raise AssertionError("the aggregator ran")

    monkeypatch.setattr(aggregator_app, "serve_aggregator", serve)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["aggregator", "--output-dir", str(blocker / "out")]) == EXIT_OUTPUT_NOT_WRITABLE
    assert "cannot write to output directory" in capsys.readouterr().err


def test_the_aggregators_flags_override_its_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    served: list[Settings] = []

    async def serve(settings: Settings) -> int:
        served.append(settings)
        return 0

    monkeypatch.setattr(aggregator_app, "serve_aggregator", serve)
    argv = ["aggregator", "--bootstrap-servers", "kafka:9092", "--output-dir", str(tmp_path)]
    assert main(argv) == 0
    [settings] = served
    assert (settings.bootstrap_servers, settings.output_dir) == ("kafka:9092", tmp_path)


@pytest.mark.parametrize(("interrupted", "code"), [(False, 0), (True, EXIT_INTERRUPTED)])
def test_a_role_stopped_by_ctrl_c_exits_130_after_its_clean_stop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, interrupted: bool, code: int
) -> None:
    """SIGTERM, an orchestrator's stop, exits 0; Ctrl-C exits as an interrupted command does."""

    async def serve(settings: Settings) -> int:
        if interrupted:
            process.mark_interrupted()
        return 0  # the role itself stopped cleanly either way

    monkeypatch.setattr(aggregator_app, "serve_aggregator", serve)
    assert main(["aggregator", "--output-dir", str(tmp_path)]) == code
