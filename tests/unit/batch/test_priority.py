from __future__ import annotations

import pytest

from llm_stream.batch.priority import MAX_PRIORITY, priority_header, priority_of
from llm_stream.contracts import PRIORITY_HEADER


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("-3", -3),
        (" 7 ", 7),
        ("10000000000", MAX_PRIORITY),
        ("-10000000000", -MAX_PRIORITY),
        ("high", None),
        ("1.5", None),
        ("", None),
    ],
)
def test_a_priority_is_an_integer_clamped_and_garbage_is_unset(
    text: str, expected: int | None
) -> None:
    assert priority_of({PRIORITY_HEADER: text}) == expected


def test_no_header_is_no_priority_and_the_header_reads_back() -> None:
    assert priority_of({}) is None
    name, value = priority_header(-4)
    assert priority_of({name: value.decode()}) == -4
