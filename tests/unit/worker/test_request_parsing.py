from __future__ import annotations

import json
import math
from http import HTTPStatus
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_stream.batch import request_line
from llm_stream.contracts import RequestMessage
from llm_stream.worker.request_parsing import DeadLetter, InvalidRequest, parse_record

LIMIT = 4096
REASON_BOUND = 400


def _record(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "batch_id": "b1",
        "custom_id": "c1",
        "method": "POST",
        "url": "/v1/completions",
        "body": {"prompt": "hi"},
    }
    return {**base, **fields}


def _line(**fields: object) -> bytes:
    return orjson.dumps(_record(**fields))


def test_a_valid_line_becomes_a_request() -> None:
    parsed = parse_record(_line())
    assert isinstance(parsed, RequestMessage)
    assert (parsed.batch_id, parsed.custom_id, parsed.body) == ("b1", "c1", {"prompt": "hi"})


def test_method_defaults_to_post_as_the_contract_says() -> None:
    record = _record()
    del record["method"]
    parsed = parse_record(orjson.dumps(record))
    assert isinstance(parsed, RequestMessage)
    assert parsed.method == "POST"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "tombstone"),
        (b"not json {", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[" * 2000 + b"]" * 2000, "not valid JSON"),
        (b"NaN", "not valid JSON"),
        (b"[1, 2]", "not a JSON object but an array"),
        (b'"text"', "not a JSON object but a string"),
        (b"null", "not a JSON object but null"),
        (_line(batch_id="../x"), "unsafe batch_id '../x'"),
        (_line(batch_id=None), "unsafe batch_id None"),
        (_line(batch_id=7), "unsafe batch_id 7"),
        (_line(batch_id="b" * 129), "unsafe batch_id"),
        (orjson.dumps({"custom_id": "c1", "url": "/v1/completions"}), "unsafe batch_id nothing"),
        (_line(custom_id=""), "custom_id must be a string of 1 to 512 characters, not ''"),
        (_line(custom_id=7), "custom_id must be a string of 1 to 512 characters, not 7"),
        (_line(custom_id=["a"]), "not ['a']"),
        (_line(custom_id="c" * 513), "(513 chars)"),
    ],
)
def test_unattributable_records_are_dead_letters(value: bytes | None, reason: str) -> None:
    parsed = parse_record(value)
    assert isinstance(parsed, DeadLetter)
    assert reason in parsed.reason


def test_a_record_with_neither_id_names_both_in_its_reason() -> None:
    parsed = parse_record(orjson.dumps({"url": "/v1/completions"}))
    assert isinstance(parsed, DeadLetter)
    assert "batch_id" in parsed.reason
    assert "custom_id" in parsed.reason


@pytest.mark.parametrize("field", ["batch_id", "custom_id"])
def test_huge_ids_give_a_bounded_reason(field: str) -> None:
    parsed = parse_record(_line(**{field: "x" * 600_000}))
    assert isinstance(parsed, DeadLetter)
    assert len(parsed.reason) < REASON_BOUND
    assert "(600000 chars)" in parsed.reason


def test_a_huge_non_string_id_gives_a_bounded_reason() -> None:
    parsed = parse_record(_line(custom_id={f"k{i}": "v" * 1000 for i in range(1000)}))
    assert isinstance(parsed, DeadLetter)
    assert len(parsed.reason) < REASON_BOUND


def test_attributable_but_malformed_lines_become_invalid_requests() -> None:
    parsed = parse_record(_line(body="not an object", url=None))
    assert isinstance(parsed, InvalidRequest)
    assert (parsed.batch_id, parsed.custom_id) == ("b1", "c1")
    assert parsed.message.startswith("Invalid batch request line: ")
    assert "body must be a JSON object, not 'not an object'" in parsed.message
    assert "url must be a string, not None" in parsed.message
    assert parsed.response.status_code == HTTPStatus.BAD_REQUEST


def test_unknown_fields_are_invalid_on_the_wire() -> None:
    parsed = parse_record(_line(priority=1))
    assert isinstance(parsed, InvalidRequest)
    assert "unknown fields ['priority']" in parsed.message


def test_a_record_over_the_limit_is_answered_413_in_vllms_shape() -> None:
    value = _line(body={"prompt": "x" * LIMIT})
    parsed = parse_record(value, max_bytes=LIMIT)
    assert isinstance(parsed, InvalidRequest)
    assert parsed.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert f"{len(value)} bytes" in parsed.message
    body = parsed.response.body
    assert body is not None
    assert body["error"]["code"] == 413
    assert body["error"]["type"] == "RequestEntityTooLargeError"
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_the_size_limit_is_inclusive() -> None:
    value = _line()
    assert isinstance(parse_record(value, max_bytes=len(value)), RequestMessage)
    assert isinstance(parse_record(value, max_bytes=len(value) - 1), InvalidRequest)


def test_an_unattributable_record_over_the_limit_is_a_dead_letter() -> None:
    parsed = parse_record(_line(custom_id=None, body={"p": "x" * LIMIT}), max_bytes=LIMIT)
    assert isinstance(parsed, DeadLetter)


def test_the_default_limit_is_the_settings_default() -> None:
    big = _line(body={"prompt": "x" * request_line.DEFAULT_MAX_RECORD_BYTES})
    parsed = parse_record(big)
    assert isinstance(parsed, InvalidRequest)
    assert parsed.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def test_nesting_too_deep_to_publish_is_an_invalid_request() -> None:
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    parsed = parse_record(json.dumps(_record(body={"prompt": deep})).encode())
    assert isinstance(parsed, InvalidRequest)
    assert "cannot be published" in parsed.message


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "hi", "n": -1},
        {"prompt": "hi", "n": 10**30},
        {"prompt": "hi", "temperature": 1e308},
        {"prompt": "hi", "stream": True},
    ],
)
def test_what_vllm_decides_is_left_to_the_engine(body: dict[str, Any]) -> None:
    value = json.dumps(_record(body=body)).encode()
    parsed = parse_record(value)
    assert isinstance(parsed, RequestMessage)
    assert parsed.body.keys() == body.keys()


@pytest.mark.parametrize(("method", "url"), [("GET", "/v1/completions"), ("POST", "/v1/x")])
def test_serving_rules_are_left_to_the_engine(method: str, url: str) -> None:
    parsed = parse_record(_line(method=method, url=url))
    assert isinstance(parsed, RequestMessage)
    assert request_line.serving_refusal(parsed.method, parsed.url, parsed.body) is not None


def _check_outcome(parsed: object) -> None:
    assert isinstance(parsed, RequestMessage | InvalidRequest | DeadLetter)
    if isinstance(parsed, DeadLetter):
        assert len(parsed.reason) < REASON_BOUND


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_parse_record_never_raises_on_arbitrary_bytes(value: bytes) -> None:
    _check_outcome(parse_record(value, max_bytes=1024))


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=600),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=30,
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "batch_id": _json | st.just("b1"),
        "custom_id": _json | st.just("c1"),
        "method": _json | st.just("POST"),
        "url": _json | st.sampled_from(["/v1/completions", "/v1/embeddings"]),
        "body": _json | st.dictionaries(st.sampled_from(["n", "stream", "prompt"]), _json),
        "extra": _json,
    },
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_json, _fields))
def test_parse_record_never_raises_on_arbitrary_json_values(document: object) -> None:
    value = json.dumps(document).encode()  # huge ints, NaN and Infinity included
    parsed = parse_record(value, max_bytes=1024)
    _check_outcome(parsed)
    if isinstance(parsed, RequestMessage):
        assert isinstance(document, dict)
        assert (parsed.batch_id, parsed.custom_id) == (document["batch_id"], document["custom_id"])


def test_nan_in_a_body_is_not_json() -> None:
    value = json.dumps(_record(body={"temperature": math.nan})).encode()
    parsed = parse_record(value)
    assert isinstance(parsed, DeadLetter)
    assert "not valid JSON" in parsed.reason
