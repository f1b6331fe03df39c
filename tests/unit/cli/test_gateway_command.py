"""``llm-stream gateway``: its flags override the settings the server runs with."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_stream.cli.main import main
from llm_stream.gateway import app as gateway_app
from llm_stream.settings import Settings


def test_flags_override_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    served: list[Settings] = []

    async def serve(settings: Settings) -> int:
        served.append(settings)
        return 0

    monkeypatch.setattr(gateway_app, "serve_gateway", serve)
    monkeypatch.setattr("llm_stream.ops.runtime.start_process", lambda *args: None)
    code = main(
        [
            "gateway",
            "--host",
            "0.0.0.0",
            "--port",
            "8123",
            "--bootstrap-servers",
            "kafka:9092",
            "--output-dir",
            str(tmp_path),
        ]
    )
    assert code == 0
    [settings] = served
    assert (settings.gateway_host, settings.gateway_port) == ("0.0.0.0", 8123)
    assert (settings.bootstrap_servers, settings.output_dir) == ("kafka:9092", tmp_path)
