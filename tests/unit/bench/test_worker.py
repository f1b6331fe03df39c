"""The worker bench's pieces: its request lines, its tally of results, and its own topics."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm_stream.bench.support import BenchError
from llm_stream.bench.worker import ResultTally, bench_settings, request_lines
from llm_stream.contracts import RequestMessage


def _result(custom_id: str, status: int = 200, tokens: int = 4, batch: str = "b") -> dict[str, Any]:
    body = {"usage": {"completion_tokens": tokens}} if status == 200 else {"error": {}}
    return {
        "batch_id": batch,
        "custom_id": custom_id,
        "response": {"status_code": status, "body": body},
    }


def test_request_lines_are_valid_request_messages_that_ignore_eos() -> None:
    lines = request_lines("batch-1", ["a", "b"], 7)
    messages = [RequestMessage.model_validate(orjson.loads(line)) for line in lines]
    assert [m.custom_id for m in messages] == ["req-0", "req-1"]
    assert {m.batch_id for m in messages} == {"batch-1"}
    assert messages[1].url == "/v1/completions"
    assert messages[1].body == {
        "prompt": "b",
        "max_tokens": 7,
        "temperature": 0,
        "ignore_eos": True,
    }


def test_a_tally_counts_each_request_once_and_ignores_other_batches() -> None:
    tally = ResultTally("b", ["req-0", "req-1"])
    tally.add(_result("req-0"))
    tally.add(_result("req-0", tokens=99))  # a redelivery
    tally.add(_result("req-1", batch="other"))
    assert (tally.pending, tally.completion_tokens) == (1, 4)
    tally.add(_result("req-1", tokens=5))
    assert (tally.pending, tally.completion_tokens) == (0, 9)


def test_a_tally_fails_loudly_on_an_error_result() -> None:
    tally = ResultTally("b", ["req-0"])
    with pytest.raises(BenchError, match="req-0 was not answered with 200"):
        tally.add(_result("req-0", status=400))


def test_each_round_gets_its_own_topics_and_group() -> None:
    one, two = bench_settings("h:1", "aaaa"), bench_settings("h:1", "bbbb")
    assert one["bootstrap_servers"] == "h:1"
    names = {k: v for k, v in one.items() if k != "bootstrap_servers"}
    assert len(set(names.values())) == len(names)
    assert not set(names.values()) & set(two.values())
