"""run-batch's private broker: its settings never come from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import SettingsError

from llm_stream.run_batch.args import private_settings
from llm_stream.settings import Settings

#: A shell pointed at a production cluster: connection, credentials, topics, groups, storage.
PRODUCTION = {
    "LLM_STREAM_BOOTSTRAP_SERVERS": "kafka.prod.example:9096",
    "LLM_STREAM_SECURITY_PROTOCOL": "SASL_SSL",
    "LLM_STREAM_SASL_MECHANISM": "SCRAM-SHA-512",
    "LLM_STREAM_SASL_PLAIN_USERNAME": "prod-worker",
    "LLM_STREAM_SASL_PLAIN_PASSWORD": "prod-password",
    "LLM_STREAM_REQUESTS_TOPIC": "prod.requests",
    "LLM_STREAM_RESULTS_TOPIC": "prod.results",
    "LLM_STREAM_BATCHES_TOPIC": "prod.batches",
    "LLM_STREAM_BATCH_STATUS_TOPIC": "prod.status",
    "LLM_STREAM_WORKER_GROUP_ID": "prod-workers",
    "LLM_STREAM_AGGREGATOR_GROUP_ID": "prod-aggregators",
    "LLM_STREAM_STORAGE_URL": "s3://prod-bucket/batches",
    "LLM_STREAM_OPS_PORT": "9400",
    "LLM_STREAM_TOPIC_REPLICATION_FACTOR": "3",
}


def _build(tmp_path: Path) -> Settings:
    return private_settings("127.0.0.1:19092", tmp_path / "batches", max_in_flight=4)


def test_cluster_settings_in_the_environment_do_not_reach_the_private_broker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    assert Settings().bootstrap_servers == "kafka.prod.example:9096"  # the shell really is set

    settings = _build(tmp_path)

    assert settings.bootstrap_servers == "127.0.0.1:19092"
    assert settings.security_protocol == "PLAINTEXT"
    assert settings.sasl_mechanism is None
    assert settings.sasl_plain_username is None
    assert settings.sasl_plain_password is None
    assert settings.requests_topic == "llm-stream.requests"
    assert settings.worker_group_id == "llm-stream-workers"
    assert settings.storage_url is None
    assert settings.ops_port is None
    assert settings.output_dir == tmp_path / "batches"
    assert settings.max_in_flight == 4


def test_the_environment_changes_nothing_at_all(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in PRODUCTION:
        monkeypatch.delenv(name, raising=False)
    clean = _build(tmp_path).model_dump()
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    assert _build(tmp_path).model_dump() == clean


def test_copies_with_overrides_stay_clear_of_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LLM_STREAM_BOOTSTRAP_SERVERS", "kafka.prod.example:9096")
    copy = _build(tmp_path).with_overrides(drain_timeout_s=1)
    assert (copy.bootstrap_servers, copy.drain_timeout_s) == ("127.0.0.1:19092", 1)


def test_secret_files_named_in_the_environment_are_not_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LLM_STREAM_SASL_PLAIN_PASSWORD_FILE", str(tmp_path / "absent"))
    with pytest.raises(SettingsError, match="cannot read the file"):
        Settings()
    assert _build(tmp_path).sasl_plain_password is None
