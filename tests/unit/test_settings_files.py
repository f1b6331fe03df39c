"""``LLM_STREAM_<NAME>_FILE``: a setting read from a file (a mounted secret), the file winning
over the variable, its trailing newline dropped, an unreadable file a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import SettingsError

from llm_stream.settings import Settings

PASSWORD = "scram-pw-41c7"


def test_a_setting_is_read_from_its_file_and_the_file_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "password"
    secret.write_text(f"{PASSWORD}\n")  # as `kubectl create secret` mounts it
    keys = tmp_path / "keys"
    keys.write_text(f"{'k1' * 16},{'k2' * 16}")
    monkeypatch.setenv("LLM_STREAM_SASL_PLAIN_PASSWORD", "from-the-environment")
    monkeypatch.setenv("LLM_STREAM_SASL_PLAIN_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("LLM_STREAM_GATEWAY_API_KEYS_FILE", str(keys))
    monkeypatch.setenv("LLM_STREAM_SASL_PLAIN_USERNAME", "svc")
    settings = Settings()
    assert settings.sasl_plain_password is not None
    assert settings.sasl_plain_password.get_secret_value() == PASSWORD
    assert [key.get_secret_value() for key in settings.gateway_api_keys] == ["k1" * 16, "k2" * 16]
    assert settings.sasl_plain_username == "svc"
    assert Settings(sasl_plain_password="given").sasl_plain_password.get_secret_value() == "given"  # type: ignore[union-attr]


def test_a_missing_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_STREAM_SASL_OAUTH_CLIENT_SECRET_FILE", str(tmp_path / "absent"))
    with pytest.raises(SettingsError, match=r"LLM_STREAM_SASL_OAUTH_CLIENT_SECRET_FILE=.*absent"):
        Settings()


def test_only_the_trailing_newline_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "password"
    secret.write_bytes(b" two words\nsecond line\r\n")  # its last line ended on Windows
    monkeypatch.setenv("LLM_STREAM_SASL_PLAIN_PASSWORD_FILE", str(secret))
    password = Settings().sasl_plain_password
    assert password is not None
    assert password.get_secret_value() == " two words\nsecond line"


def test_a_plain_setting_may_come_from_a_file_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    servers = tmp_path / "servers"
    servers.write_text("kafka-0:9092\n")
    monkeypatch.setenv("LLM_STREAM_BOOTSTRAP_SERVERS_FILE", str(servers))
    assert Settings().bootstrap_servers == "kafka-0:9092"


def test_a_directory_given_as_the_file_names_the_variable_and_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_STREAM_SASL_PLAIN_PASSWORD_FILE", str(tmp_path))
    with pytest.raises(SettingsError) as refused:
        Settings()
    message = str(refused.value)
    assert message.startswith(f"LLM_STREAM_SASL_PLAIN_PASSWORD_FILE={tmp_path}: cannot read")
