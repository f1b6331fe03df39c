"""/v1/embeddings through the pipeline when the worker runs the model as an embedding model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from llm_stream.broker.embedded import EmbeddedBroker
from llm_stream.engine.tiny_model import HIDDEN_SIZE
from tests.kafka_helpers import collect, publish
from tests.processes import SERVED_MODEL, running, worker_args

pytestmark = [pytest.mark.engine, pytest.mark.broker]


def _line(custom_id: str, url: str, body: dict[str, Any]) -> bytes:
    line = {"batch_id": "emb", "custom_id": custom_id, "method": "POST", "url": url, "body": body}
    return orjson.dumps(line)


async def test_an_embedding_worker_answers_embeddings_and_refuses_generation(
    tiny_model: str, tmp_path: Path
) -> None:
    with EmbeddedBroker() as broker:
        settings = {"bootstrap_servers": broker.bootstrap_servers, "topic_partitions": "1"}
        lines = [
            _line("one", "/v1/embeddings", {"model": SERVED_MODEL, "input": "Kafka topics"}),
            _line("two", "/v1/embeddings", {"model": SERVED_MODEL, "input": ["a", "b c"]}),
            _line("chat", "/v1/chat/completions", {"model": SERVED_MODEL, "messages": []}),
        ]
        await publish(broker.bootstrap_servers, "llm-stream.requests", lines)
        args = [*worker_args(tiny_model), "--runner", "pooling", "--convert", "embed"]
        with running(args, settings, tmp_path / "worker.log"):
            results = await collect(
                broker.bootstrap_servers,
                "llm-stream.results",
                lambda got: len(got) >= 3,
                within=300,
            )
    by_id = {result["custom_id"]: result["response"] for result in results}
    assert by_id["one"]["status_code"] == 200
    one = by_id["one"]["body"]
    assert one["object"] == "list"
    assert len(one["data"][0]["embedding"]) == HIDDEN_SIZE
    assert [item["index"] for item in by_id["two"]["body"]["data"]] == [0, 1]
    assert by_id["chat"]["status_code"] == 404
    assert "does not support /v1/chat/completions" in by_id["chat"]["body"]["error"]["message"]
