from __future__ import annotations

from typing import Any

import pytest

from llm_stream.curation.finetune import problems

GOOD: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": "Hello.", "weight": 1},
    ]
}


def test_a_valid_example_has_no_problem() -> None:
    assert problems(GOOD) == []


def test_assistant_tool_calls_need_no_content() -> None:
    calls = {"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}
    example = {
        "messages": [
            {"role": "user", "content": "x"},
            calls,
            {"role": "tool", "content": "1", "tool_call_id": "c"},
            {"role": "assistant", "content": "1"},
        ]
    }
    assert problems(example) == []


@pytest.mark.parametrize(
    ("example", "problem"),
    [
        ({"messages": []}, "messages is a non-empty list"),
        ({"messages": [{"role": "user", "content": "x"}]}, "no assistant message"),
        (
            {"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]},
            "the last message is not the assistant's",
        ),
        ({"messages": [{"role": "robot", "content": "x"}]}, "unknown role 'robot'"),
        ({"messages": [{"role": "assistant", "content": ""}]}, "empty content"),
        ({"messages": [{"role": "assistant", "content": []}]}, "empty content"),
        ({"messages": [{"role": "assistant", "content": "x", "extra": 1}]}, "unknown keys"),
        ({"messages": [{"role": "assistant", "content": "x", "weight": 2}]}, "weight is 0 or 1"),
        ({**GOOD, "other": 1}, "unknown keys ['other']"),
        ("text", "an example is a JSON object"),
    ],
)
def test_each_rule(example: Any, problem: str) -> None:
    assert any(problem in found for found in problems(example))
