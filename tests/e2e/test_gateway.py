"""The whole service as a user runs it, driven by the official ``openai`` client: a worker on
vLLM with the tiny model, an aggregator and the gateway, each its own ``llm-stream`` process."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path
from typing import Any, Final

import openai
import orjson
import pytest

from llm_stream.batch.status import TERMINAL_STATUSES
from llm_stream.kafka.topics import ensure_topics
from llm_stream.network import free_port
from llm_stream.settings import Settings
from tests.gateway_support import jsonl
from tests.processes import SERVED_MODEL, running, worker_args

pytestmark = [pytest.mark.engine, pytest.mark.broker]

KEY = "sk-e2e-test-0123456789abcdef0123456"
CHAT: Final = "/v1/chat/completions"
RESPONSES: Final = "/v1/responses"


def _chat(custom_id: str, content: str) -> dict[str, Any]:
    body = {
        "model": SERVED_MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 6,
        "temperature": 0,
    }
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def _wait_ready(url: str, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5):
                return
        except OSError:
            assert time.monotonic() < deadline, f"{url} never became ready"
            time.sleep(0.5)


async def test_the_openai_client_gets_vllm_answers_through_the_gateway(
    isolated_settings: Settings, tiny_model: str, tmp_path: Path
) -> None:
    settings = isolated_settings.with_overrides(topic_partitions=2)
    await ensure_topics(settings)
    env = {
        name: str(getattr(settings, name))
        for name in (
            "bootstrap_servers",
            "requests_topic",
            "results_topic",
            "batches_topic",
            "batch_status_topic",
            "dead_letter_topic",
            "worker_group_id",
            "aggregator_group_id",
            "output_dir",
            "topic_partitions",
        )
    }
    env["gateway_api_keys"] = KEY
    env["worker_heartbeat_interval_s"] = "1"  # its endpoints announced soon after its start
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    lines = [_chat(f"c{i}", f"Tell me about Kafka number {i}") for i in range(8)]
    with (
        # Few sequences at a time, so a long batch is still running when it is cancelled.
        running(
            [*worker_args(tiny_model), "--max-num-seqs", "16"], env, tmp_path / "worker.log"
        ) as worker,
        running(["aggregator"], env, tmp_path / "aggregator.log") as aggregator,
        running(
            ["gateway", "--host", "127.0.0.1", "--port", str(port)],
            env,
            tmp_path / "gateway.log",
        ) as gateway,
    ):
        _wait_ready(base, within=60)
        client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)
        uploaded = await client.files.create(file=("chat.jsonl", jsonl(lines)), purpose="batch")
        batch = await client.batches.create(
            input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h"
        )
        deadline = time.monotonic() + 300  # the worker loads its engine meanwhile
        while batch.status not in TERMINAL_STATUSES:
            assert time.monotonic() < deadline, f"still {batch.status}"
            for process, log in (
                (worker, "worker"),
                (aggregator, "aggregator"),
                (gateway, "gateway"),
            ):
                assert process.poll() is None, (tmp_path / f"{log}.log").read_text()[-3000:]
            await asyncio.sleep(1)
            batch = await client.batches.retrieve(batch.id)

        assert batch.status == "completed", batch
        assert batch.request_counts is not None
        assert batch.request_counts.completed == len(lines)
        assert batch.input_file_id == uploaded.id
        assert batch.output_file_id is not None
        content = (await client.files.content(batch.output_file_id)).content
        answers = {line["custom_id"]: line for line in map(orjson.loads, content.splitlines())}
        assert set(answers) == {line["custom_id"] for line in lines}
        for answer in answers.values():
            assert answer["error"] is None
            assert answer["response"]["status_code"] == 200
            body = answer["response"]["body"]
            assert (body["object"], body["model"]) == ("chat.completion", SERVED_MODEL)
            assert isinstance(body["choices"][0]["message"]["content"], str)
        listed = [listed.id async for listed in client.batches.list()]
        assert batch.id in listed

        wrong = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as refused:
            await wrong.batches.list()
        assert refused.value.status_code == 401

        await _a_responses_batch_runs_unchanged(client)
        await _endpoints_no_worker_serves_fail_at_validation(client)
        await _cancel_a_long_batch_halfway(client)


async def _finished(client: openai.AsyncOpenAI, batch_id: str) -> Any:
    deadline = time.monotonic() + 300
    batch = await client.batches.retrieve(batch_id)
    while batch.status not in TERMINAL_STATUSES:
        assert time.monotonic() < deadline, f"still {batch.status}"
        await asyncio.sleep(0.5)
        batch = await client.batches.retrieve(batch_id)
    return batch


async def _a_responses_batch_runs_unchanged(client: openai.AsyncOpenAI) -> None:
    """An OpenAI /v1/responses batch, as OpenAI's documentation writes its lines: answered
    by vLLM's Responses serving object, each body an OpenAI ``Response``, usage summed."""
    from openai.types.responses import Response

    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": RESPONSES,
            "body": {
                "model": SERVED_MODEL,
                "instructions": "You answer briefly.",
                "input": f"Say something about stream number {i}",
                "max_output_tokens": 6,
                "temperature": 0,
            },
        }
        for i in range(3)
    ]
    uploaded = await client.files.create(file=("r.jsonl", jsonl(lines)), purpose="batch")
    created = await client.batches.create(
        input_file_id=uploaded.id, endpoint=RESPONSES, completion_window="24h"
    )
    batch = await _finished(client, created.id)
    assert batch.status == "completed", batch
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (3, 0)
    assert batch.output_file_id is not None
    content = (await client.files.content(batch.output_file_id)).content
    answers = [orjson.loads(line) for line in content.splitlines()]
    assert sorted(answer["custom_id"] for answer in answers) == ["r0", "r1", "r2"]
    output_tokens = 0
    for answer in answers:
        assert answer["error"] is None
        assert answer["response"]["status_code"] == 200
        response = Response.model_validate(answer["response"]["body"])
        assert (response.object, response.model) == ("response", SERVED_MODEL)
        assert response.output_text
        assert response.usage is not None
        assert response.usage.input_tokens > 0
        output_tokens += response.usage.output_tokens
    assert batch.usage is not None
    assert batch.usage.output_tokens == output_tokens > 0


async def _endpoints_no_worker_serves_fail_at_validation(client: openai.AsyncOpenAI) -> None:
    """The worker's model generates: an embeddings batch (no live worker serves it) and a
    moderations batch (OpenAI's, served by none) fail at creation, not at expiry."""
    line = {"custom_id": "e", "method": "POST", "url": "/v1/embeddings"}
    line["body"] = {"model": SERVED_MODEL, "input": "Kafka"}
    uploaded = await client.files.create(file=("e.jsonl", jsonl([line])), purpose="batch")
    for endpoint, says in (
        ("/v1/embeddings", "No live worker serves /v1/embeddings"),
        ("/v1/moderations", "This service does not serve /v1/moderations"),
    ):
        batch = await client.batches.create(
            input_file_id=uploaded.id,
            endpoint=endpoint,  # type: ignore[arg-type]
            completion_window="24h",
        )
        assert batch.status == "failed", batch
        assert batch.errors is not None
        assert batch.errors.data is not None
        first = batch.errors.data[0]
        assert (first.code, first.param) == ("unsupported_endpoint", "endpoint")
        assert says in (first.message or "")


async def _cancel_a_long_batch_halfway(client: openai.AsyncOpenAI) -> None:
    """Cancelled while it runs: ``cancelled``, the answers it had, the rest batch_cancelled."""
    # 60 rounds of the worker's 16 sequences: progress comes every 2 s and 160 lines once ran
    # in 3 s, so the batch must last far beyond the moment its first 16 answers are seen.
    long_lines = [_chat(f"long{i}", f"Write at length about topic {i}") for i in range(960)]
    for line in long_lines:
        line["body"].update(max_tokens=200, ignore_eos=True)
    uploaded = await client.files.create(file=("long.jsonl", jsonl(long_lines)), purpose="batch")
    batch = await client.batches.create(
        input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h"
    )
    deadline = time.monotonic() + 300
    while batch.request_counts is None or batch.request_counts.completed < 16:
        assert batch.status not in TERMINAL_STATUSES, f"ended before the cancel: {batch}"
        assert time.monotonic() < deadline, "the long batch never got going"
        await asyncio.sleep(0.5)
        batch = await client.batches.retrieve(batch.id)
    batch = await client.batches.cancel(batch.id)
    assert batch.status in ("cancelling", "cancelled")
    while batch.status not in TERMINAL_STATUSES:
        assert time.monotonic() < deadline, f"still {batch.status} after the cancel"
        await asyncio.sleep(0.5)
        batch = await client.batches.retrieve(batch.id)
    assert batch.status == "cancelled", batch
    assert batch.cancelled_at is not None
    counts = batch.request_counts
    assert counts is not None
    assert 16 <= counts.completed < len(long_lines)
    assert counts.completed + counts.failed == len(long_lines)
    assert batch.error_file_id is not None
    errors = (await client.files.content(batch.error_file_id)).content.splitlines()
    codes = {orjson.loads(line)["error"]["code"] for line in errors}
    assert codes == {"batch_cancelled"}
    assert len(errors) == counts.failed
