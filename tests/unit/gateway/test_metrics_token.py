"""The gateway's /metrics takes the same bearer token as every role's ops endpoint."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from llm_stream.files.store import LocalFileStore
from llm_stream.gateway.app import create_app
from llm_stream.settings import Settings
from tests.gateway_support import FakeBatchStream


def test_gateway_metrics_need_the_ops_token_and_health_stays_open(tmp_path: Path) -> None:
    settings = Settings(output_dir=tmp_path / "batches", ops_metrics_token="m-token")
    app = create_app(settings, store=LocalFileStore(settings.output_dir), stream=FakeBatchStream())
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        bearer = {"Authorization": "Bearer m-token"}
        assert client.get("/metrics", headers=bearer).status_code == 200
        assert client.get("/healthz").status_code == 200
        assert "m-token" not in client.get("/readyz").text
