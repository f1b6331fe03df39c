from __future__ import annotations

from typing import Any

import pytest

from llm_stream.batch.usage import TokenCounts, UsageTotals, answered_model, response_tokens


def test_a_chat_answers_usage_is_read_with_its_details() -> None:
    body = {
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 7,
            "total_tokens": 19,
            "prompt_tokens_details": {"cached_tokens": 8},
            "completion_tokens_details": {"reasoning_tokens": 5},
        }
    }
    assert response_tokens(body) == TokenCounts(input=12, cached=8, output=7, reasoning=5)


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        {"usage": None},
        {"usage": "lots"},
        {"usage": {"prompt_tokens": "12", "completion_tokens": -3}},
        {"usage": {"prompt_tokens": True, "prompt_tokens_details": None}},
        {"error": {"message": "bad request"}},
    ],
)
def test_a_body_without_sensible_usage_counts_nothing(body: dict[str, Any] | None) -> None:
    assert response_tokens(body) == TokenCounts()


def test_an_embedding_counts_its_prompt_only() -> None:
    assert response_tokens({"usage": {"prompt_tokens": 4, "total_tokens": 4}}) == TokenCounts(
        input=4
    )


def test_totals_are_openais_usage_with_total_input_plus_output() -> None:
    totals = UsageTotals()
    totals.add(TokenCounts(input=10, cached=2, output=3, reasoning=1))
    totals.add(TokenCounts(input=5, output=4))
    assert totals.usage().model_dump() == {
        "input_tokens": 15,
        "input_tokens_details": {"cached_tokens": 2},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 1},
        "total_tokens": 22,
    }


def test_the_model_that_answered_comes_from_the_response_body() -> None:
    assert answered_model({"model": "tiny-llama", "choices": []}) == "tiny-llama"
    assert answered_model(None) is None  # a cancelled line has no body
    assert answered_model({"model": 3}) is None
    assert answered_model({"model": ""}) is None


def test_a_batch_sums_only_what_its_bodies_count() -> None:
    totals = UsageTotals()
    totals.add_bodies(
        [
            {"usage": {"prompt_tokens": 3, "completion_tokens": 2}},
            None,
            {"usage": "garbage"},
            {"usage": {"prompt_tokens": True, "completion_tokens": -1}},
            {"usage": {"prompt_tokens_details": {"cached_tokens": 1}, "prompt_tokens": 4}},
        ]
    )
    assert (totals.input, totals.cached, totals.output, totals.reasoning) == (7, 1, 2, 0)


def test_a_responses_answers_usage_is_read_under_its_own_names() -> None:
    """The Responses API says input/output tokens, with the same details OpenAI's batch usage
    reports."""
    body = {
        "object": "response",
        "usage": {
            "input_tokens": 12,
            "input_tokens_details": {"cached_tokens": 4},
            "output_tokens": 6,
            "output_tokens_details": {"reasoning_tokens": 2},
            "total_tokens": 18,
        },
    }
    assert response_tokens(body) == TokenCounts(input=12, cached=4, output=6, reasoning=2)
