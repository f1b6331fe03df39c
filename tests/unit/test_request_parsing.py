from __future__ import annotations

import orjson
import pytest

from service.contracts import RequestMessage
from service.request_parsing import DeadLetter, InvalidRequest, parse_record


def _line(**fields: object) -> bytes:
    base: dict[str, object] = {
        "batch_id": "b1",
        "custom_id": "c1",
        "method": "POST",
        "url": "/v1/completions",
        "body": {"prompt": "hi"},
    }
    return orjson.dumps({**base, **fields})


def test_a_valid_line_becomes_a_request() -> None:
    parsed = parse_record(_line())
    assert isinstance(parsed, RequestMessage)
    assert (parsed.batch_id, parsed.custom_id, parsed.body) == ("b1", "c1", {"prompt": "hi"})


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "tombstone"),
        (b"not json {", "not JSON"),
        (b"[1, 2]", "not an object"),
        (_line(batch_id="../x"), "unsafe batch_id"),
        (_line(batch_id=None), "unsafe batch_id"),
        (_line(custom_id=""), "invalid custom_id"),
        (_line(custom_id=7), "invalid custom_id"),
    ],
)
def test_unattributable_records_are_dead_letters(value: bytes | None, reason: str) -> None:
    parsed = parse_record(value)
    assert isinstance(parsed, DeadLetter)
    assert reason in parsed.reason


def test_attributable_but_malformed_lines_become_invalid_requests() -> None:
    parsed = parse_record(_line(body="not an object", url=None))
    assert isinstance(parsed, InvalidRequest)
    assert (parsed.batch_id, parsed.custom_id) == ("b1", "c1")
    assert "body" in parsed.message
    assert "url" in parsed.message
