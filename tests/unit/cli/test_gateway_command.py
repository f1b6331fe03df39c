"""``llm-stream gateway``: its flags override the settings the server runs with."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_stream.cli.exit_codes import EXIT_USAGE
from llm_stream.cli.main import main
from llm_stream.gateway import app as gateway_app
from llm_stream.settings import Settings


def test_flags_override_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    served: list[Settings] = []

    async def serve(settings: Settings) -> int:
        served.append(settings)
        return 0

    monkeypatch.setattr(gateway_app, "serve_gateway", serve)
    monkeypatch.setattr("llm_stream.ops.process.start_process", lambda *args: None)
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


def _serve_nothing(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Stop at the Kafka step: whatever reaches it was not refused."""
    reached: list[Settings] = []

    async def ensure_topics(settings: Settings) -> None:
        reached.append(settings)
        raise SystemExit(0)

    monkeypatch.setattr(gateway_app, "ensure_topics", ensure_topics)
    monkeypatch.setattr("llm_stream.ops.process.start_process", lambda *args: None)
    return reached


def test_an_open_gateway_beyond_loopback_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reached = _serve_nothing(monkeypatch)
    empty_keys = tmp_path / "keys"
    empty_keys.write_text("\n")  # a secret mounted empty: no keys
    monkeypatch.setenv("LLM_STREAM_GATEWAY_API_KEYS_FILE", str(empty_keys))
    argv = ["gateway", "--host", "0.0.0.0", "--port", "0", "--output-dir", str(tmp_path)]
    assert main(argv) == EXIT_USAGE
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "0.0.0.0 without API keys" in line
    assert "--allow-no-auth" in line
    assert reached == []


def test_an_open_gateway_is_served_on_loopback_or_when_allowed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reached = _serve_nothing(monkeypatch)
    monkeypatch.delenv("LLM_STREAM_GATEWAY_API_KEYS", raising=False)
    base = ["gateway", "--port", "0", "--output-dir", str(tmp_path)]
    with pytest.raises(SystemExit):
        main(base)  # unset host without keys: 127.0.0.1
    with pytest.raises(SystemExit):
        main([*base, "--host", "0.0.0.0", "--allow-no-auth"])
    assert [settings.gateway_allow_no_auth for settings in reached] == [False, True]
    assert "0.0.0.0 without API keys: anyone who reaches it may use it" in caplog.text


def test_kafka_credentials_in_the_clear_stop_the_gateway_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("llm_stream.ops.process.start_process", lambda *args: None)
    for name, value in {
        "SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "SASL_MECHANISM": "SCRAM-SHA-256",
        "SASL_PLAIN_USERNAME": "svc",
        "SASL_PLAIN_PASSWORD": "pw-never-shown",
    }.items():
        monkeypatch.setenv(f"LLM_STREAM_{name}", value)
    argv = ["gateway", "--bootstrap-servers", "kafka:9092", "--port", "0"]
    assert main([*argv, "--output-dir", str(tmp_path)]) == EXIT_USAGE
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "SCRAM-SHA-256 over SASL_PLAINTEXT sends its credentials unencrypted" in line
    assert "pw-never-shown" not in line
