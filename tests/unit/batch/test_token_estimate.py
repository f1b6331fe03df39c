"""The input-token estimate quotas count: a token per four bytes of text, plus chat framing."""

from __future__ import annotations

from llm_stream.batch.token_estimate import (
    TOKENS_PER_MESSAGE,
    TOKENS_PER_REQUEST,
    count_input_tokens,
    estimate_input_tokens,
)


def test_chat_messages_count_their_text_and_the_template_around_each() -> None:
    body = {"messages": [{"role": "user", "content": "x" * 40}]}
    # "user" is 4 bytes, the content 40: 11 tokens of text.
    assert estimate_input_tokens(body) == TOKENS_PER_REQUEST + TOKENS_PER_MESSAGE + 11


def test_content_parts_and_multibyte_text_are_counted_by_their_bytes() -> None:
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "é" * 8}]}]}
    plain = {"messages": [{"role": "user", "content": "e" * 8}]}
    assert estimate_input_tokens(parts) > estimate_input_tokens(plain)


def test_prompts_inputs_and_token_ids() -> None:
    assert estimate_input_tokens({"prompt": "abcdefgh"}) == 2
    assert estimate_input_tokens({"prompt": [1, 2, 3]}) == 3  # pre-tokenized: a token each
    assert estimate_input_tokens({"input": ["abcd", "efgh"]}) == 2
    assert estimate_input_tokens({"model": "m"}) == 0
    assert estimate_input_tokens("not a body") == 0


def test_nesting_past_the_depth_bound_is_not_walked() -> None:
    deep: object = "x" * 400
    for _ in range(50):
        deep = [deep]
    assert estimate_input_tokens({"prompt": deep}) == 0


def test_lines_are_counted_by_the_model_each_names() -> None:
    lines = [
        {"body": {"model": "a", "prompt": "abcd"}},
        {"body": {"model": "b", "prompt": "abcdabcd"}},
        {"body": {"model": "a", "prompt": "abcd"}},
        {"body": {"prompt": "no model"}},
    ]
    assert count_input_tokens(lines) == {"a": 2, "b": 2}


def test_responses_score_and_rerank_inputs_are_counted() -> None:
    responses = {"model": "m", "instructions": "a" * 8, "input": "b" * 8}
    assert estimate_input_tokens(responses) == 4
    rerank = {"model": "m", "query": "q" * 4, "documents": ["d" * 4, "e" * 8]}
    assert estimate_input_tokens(rerank) == 4
