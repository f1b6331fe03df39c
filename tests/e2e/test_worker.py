"""The worker against a real broker and real vLLM on the tiny model."""

from __future__ import annotations

import asyncio
import os
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_stream.network import free_port
from tests.kafka_helpers import collect, publish
from tests.processes import SERVED_MODEL, running, worker_args

pytestmark = [pytest.mark.engine, pytest.mark.broker]

PRELOADED = 500


def _line(batch_id: str, custom_id: str, url: str, body: dict[str, Any], **extra: Any) -> bytes:
    line = {"batch_id": batch_id, "custom_id": custom_id, "method": "POST", "url": url}
    return orjson.dumps({**line, "body": body, **extra})


def _completion(prompt: str, **params: Any) -> dict[str, Any]:
    return {"model": SERVED_MODEL, "prompt": prompt, "temperature": 0, "max_tokens": 8, **params}


@pytest.fixture(scope="module")
async def worker_topics(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, tiny_model: str
) -> AsyncIterator[dict[str, str]]:
    """A worker started on a requests topic that already holds PRELOADED requests."""
    prefix = f"e2e-worker-{os.getpid()}"
    settings = {
        "bootstrap_servers": kafka_bootstrap,
        "requests_topic": f"{prefix}.requests",
        "results_topic": f"{prefix}.results",
        "dead_letter_topic": f"{prefix}.dead-letter",
        "worker_group_id": f"{prefix}.workers",
        "topic_partitions": "4",
        "ops_host": "127.0.0.1",
        "ops_port": str(free_port()),
        "max_message_bytes": str(MAX_MESSAGE_BYTES),
    }
    preload = (
        _line("preload", f"p{i}", "/v1/completions", _completion(f"item {i}", max_tokens=4))
        for i in range(PRELOADED)
    )
    await publish(kafka_bootstrap, settings["requests_topic"], preload, key=b"preload")
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with running(worker_args(tiny_model), settings, log) as process:
        yield settings
        assert process.poll() is None, log.read_text()[-3000:]
    assert process.returncode == 0, log.read_text()[-3000:]


async def test_a_worker_answers_every_request_already_waiting_in_the_topic(
    worker_topics: dict[str, str],
) -> None:
    results = await collect(
        worker_topics["bootstrap_servers"],
        worker_topics["results_topic"],
        lambda got: len({r["custom_id"] for r in got if r["batch_id"] == "preload"}) >= PRELOADED,
        within=400,
        settle=1,
    )
    counts = Counter(r["custom_id"] for r in results if r["batch_id"] == "preload")
    assert set(counts) == {f"p{i}" for i in range(PRELOADED)}
    assert max(counts.values()) == 1
    assert all(r["response"]["status_code"] == 200 for r in results)


MIXED_EXPECTED_STATUS = {
    "chat": 200,
    "echo-logprobs": 200,
    "n-two": 200,
    "stop": 200,
    "seeded-a": 200,
    "seeded-b": 200,
    "greedy": 200,
    "no-messages": 400,
    "too-long": 400,
    "unknown-endpoint": 404,
    "get-method": 405,
    "wrong-types": 400,
    "unknown-model": 404,
    "streaming": 400,
    "malformed-line": 400,
    "too-large-answer": 413,
}
#: Small enough that n=8 x 200 tokens x 20 logprobs does not fit, even compressed.
MAX_MESSAGE_BYTES = 65_536


def _mixed_lines() -> list[bytes]:
    batch = "mixed"
    chat = {
        "model": SERVED_MODEL,
        "messages": [{"role": "user", "content": "Hello there"}],
        "max_tokens": 6,
        "temperature": 0,
    }
    seeded = _completion("Kafka", temperature=1.0, seed=7, max_tokens=6)
    return [
        _line(batch, "chat", "/v1/chat/completions", chat),
        _line(
            batch,
            "echo-logprobs",
            "/v1/completions",
            _completion("The quick", echo=True, logprobs=2),
        ),
        _line(
            batch, "n-two", "/v1/completions", _completion("Hello", n=2, temperature=0.8, seed=1)
        ),
        _line(batch, "stop", "/v1/completions", _completion("The quick brown", stop=[" fox"])),
        _line(batch, "seeded-a", "/v1/completions", seeded),
        _line(batch, "seeded-b", "/v1/completions", seeded),
        _line(batch, "greedy", "/v1/completions", _completion("Offsets are committed")),
        _line(batch, "no-messages", "/v1/chat/completions", {"model": SERVED_MODEL}),
        _line(batch, "too-long", "/v1/completions", _completion("word " * 400)),
        _line(batch, "unknown-endpoint", "/v1/unknown", {"model": SERVED_MODEL}),
        _line(batch, "get-method", "/v1/completions", _completion("x"), method="GET"),
        _line(batch, "wrong-types", "/v1/completions", _completion("x", max_tokens="many")),
        _line(batch, "unknown-model", "/v1/chat/completions", {**chat, "model": "gpt-unknown"}),
        _line(batch, "streaming", "/v1/completions", _completion("x", stream=True)),
        _line(
            batch,
            "too-large-answer",
            "/v1/chat/completions",
            {
                **chat,
                "temperature": 1.0,
                "seed": 3,
                "n": 8,
                "max_tokens": 200,
                "logprobs": True,
                "top_logprobs": 20,
                "ignore_eos": True,
            },
        ),
        orjson.dumps({"batch_id": batch, "custom_id": "malformed-line", "body": "not an object"}),
        b"this is not json",
        orjson.dumps({"batch_id": batch, "url": "/v1/completions", "body": {}}),  # no custom_id
    ]


def _offline_texts(model: str) -> dict[str, str]:
    """What vLLM's offline LLM.generate answers for the greedy lines."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams

    llm = LLM(model=model, dtype="float32", max_model_len=256, enforce_eager=True, seed=0)
    try:
        prompts = {
            "greedy": ("Offsets are committed", SamplingParams(temperature=0, max_tokens=8)),
            "stop": ("The quick brown", SamplingParams(temperature=0, max_tokens=8, stop=[" fox"])),
        }
        outputs = llm.generate(
            [prompt for prompt, _ in prompts.values()], [p for _, p in prompts.values()]
        )
        return {name: out.outputs[0].text for name, out in zip(prompts, outputs, strict=True)}
    finally:
        llm.llm_engine.engine_core.shutdown()


async def test_a_mixed_file_gets_one_result_per_line_with_vllm_semantics(
    worker_topics: dict[str, str], tiny_model: str, tmp_path: Path
) -> None:
    bootstrap = worker_topics["bootstrap_servers"]
    await publish(bootstrap, worker_topics["requests_topic"], _mixed_lines(), key=b"mixed")
    offline = _offline_texts(tiny_model)

    results = await collect(
        bootstrap,
        worker_topics["results_topic"],
        lambda got: (
            len({r["custom_id"] for r in got if r["batch_id"] == "mixed"})
            >= len(MIXED_EXPECTED_STATUS)
        ),
        within=300,
        settle=2,
    )
    mixed = [r for r in results if r["batch_id"] == "mixed"]
    assert Counter(r["custom_id"] for r in mixed) == Counter(set(MIXED_EXPECTED_STATUS))
    by_id = {r["custom_id"]: r for r in mixed}
    statuses = {cid: r["response"]["status_code"] for cid, r in by_id.items()}
    assert statuses == MIXED_EXPECTED_STATUS

    def body(custom_id: str) -> dict[str, Any]:
        value: dict[str, Any] = by_id[custom_id]["response"]["body"]
        return value

    assert body("greedy")["choices"][0]["text"] == offline["greedy"]
    assert body("stop")["choices"][0]["text"] == offline["stop"]
    assert body("chat")["object"] == "chat.completion"
    assert body("chat")["usage"]["completion_tokens"] == 6
    echo = body("echo-logprobs")["choices"][0]
    assert echo["text"].startswith("The quick")
    assert len(echo["logprobs"]["top_logprobs"][-1]) == 2
    assert len(body("n-two")["choices"]) == 2
    assert body("seeded-a")["choices"][0]["text"] == body("seeded-b")["choices"][0]["text"]
    assert body("unknown-model")["error"]["type"] == "NotFoundError"
    assert body("no-messages")["error"]["param"] == "body.messages"
    assert "maximum context length" in body("too-long")["error"]["message"]
    assert "MAX_MESSAGE_BYTES" in body("too-large-answer")["error"]["message"]

    dead = await collect(
        bootstrap,
        worker_topics["dead_letter_topic"],
        lambda got: len(got) >= 2,
        within=30,
        decode=bytes,
    )
    assert sorted(dead) == sorted(_mixed_lines()[-2:])


def _scrape(settings: dict[str, str]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = f"http://{settings['ops_host']}:{settings['ops_port']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(value for (sample, _), value in samples.items() if sample == name)


async def test_metrics_of_the_service_and_of_vllm_move_by_what_was_answered(
    worker_topics: dict[str, str],
) -> None:
    before = await asyncio.to_thread(_scrape, worker_topics)
    body = _completion("metrics", max_tokens=4, ignore_eos=True)
    lines = [_line("metrics", f"m{i}", "/v1/completions", body) for i in range(3)]
    lines.append(_line("metrics", "m-bad", "/v1/nowhere", body))
    await publish(worker_topics["bootstrap_servers"], worker_topics["requests_topic"], lines)
    await collect(
        worker_topics["bootstrap_servers"],
        worker_topics["results_topic"],
        lambda got: len({r["custom_id"] for r in got if r["batch_id"] == "metrics"}) >= 4,
        within=120,
    )
    await asyncio.sleep(0.5)
    after = await asyncio.to_thread(_scrape, worker_topics)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    answered = "llm_stream_requests_answered_total"
    assert delta(answered, endpoint="/v1/completions", status_code="200") == 3
    assert delta(answered, endpoint="other", status_code="404") == 1
    assert delta("llm_stream_completion_tokens_total", endpoint="/v1/completions") == 12
    assert delta("llm_stream_time_to_first_token_seconds_count", endpoint="/v1/completions") == 3
    # vLLM's own engine metrics are served alongside ours, not re-implemented.
    assert (
        _total(after, "vllm:generation_tokens_total")
        - _total(before, "vllm:generation_tokens_total")
        == 12
    )
    assert (
        _total(after, "vllm:request_success_total") - _total(before, "vllm:request_success_total")
        == 3
    )
