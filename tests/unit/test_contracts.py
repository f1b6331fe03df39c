from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from llm_stream.batch.status import BatchStatus
from llm_stream.contracts import (
    MAX_COMPLETION_WINDOW_CONTEXT,
    MAX_CREATED_AT,
    BatchManifest,
    BatchObject,
    RequestMessage,
    ResponseData,
    ResultMessage,
    completion_window_seconds,
    completion_window_text,
    is_safe_batch_id,
    parse_manifest,
)


def test_request_accepts_an_openai_batch_line_plus_batch_id() -> None:
    line = {
        "custom_id": "req-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    }
    message = RequestMessage.model_validate({**line, "batch_id": "batch_1"})
    assert message.model_dump(exclude={"batch_id"}) == line


@pytest.mark.parametrize("batch_id", ["../etc", "a/b", "", ".hidden", "x" * 129, "a b", "a.b"])
def test_unsafe_batch_ids_are_refused(batch_id: str) -> None:
    assert not is_safe_batch_id(batch_id)
    with pytest.raises(ValidationError):
        RequestMessage(batch_id=batch_id, custom_id="c", url="/v1/completions", body={})


@pytest.mark.parametrize("batch_id", ["batch_abc123", "B-1", "0"])
def test_safe_batch_ids_are_accepted(batch_id: str) -> None:
    assert is_safe_batch_id(batch_id)


def test_request_keeps_unsupported_methods_for_an_error_line() -> None:
    message = RequestMessage(batch_id="b", custom_id="c", method="GET", url="/v1/nope", body={})
    assert (message.method, message.url) == ("GET", "/v1/nope")


def test_request_rejects_unknown_fields_and_missing_body() -> None:
    with pytest.raises(ValidationError):
        RequestMessage.model_validate({"batch_id": "b", "custom_id": "c", "url": "/v1/completions"})
    with pytest.raises(ValidationError):
        RequestMessage.model_validate(
            {"batch_id": "b", "custom_id": "c", "url": "/x", "body": {}, "extra": 1}
        )


def test_result_success_and_failure_are_told_apart() -> None:
    ok = ResultMessage(
        batch_id="b",
        id="r1",
        custom_id="c",
        response=ResponseData(status_code=200, request_id="q", body={}),
    )
    bad = ok.model_copy(update={"response": ResponseData(status_code=400, request_id="q", body={})})
    assert ok.succeeded
    assert not bad.succeeded


def test_manifest_requires_a_safe_id_and_a_positive_count() -> None:
    manifest = BatchManifest(batch_id="b", endpoint="/v1/completions", request_count=3)
    assert manifest.completion_window == "24h"
    assert manifest.created_at > 0
    with pytest.raises(ValidationError):
        BatchManifest(batch_id="../b", endpoint="/v1/completions", request_count=3)
    with pytest.raises(ValidationError):
        BatchManifest(batch_id="b", endpoint="/v1/completions", request_count=0)


@pytest.mark.parametrize(("window", "seconds"), [("24h", 86400), ("90m", 5400), ("2d", 172800)])
def test_completion_windows_convert_to_seconds(window: str, seconds: int) -> None:
    assert completion_window_seconds(window) == seconds


@pytest.mark.parametrize("window", ["", "h", "24", "1w", "-1h"])
def test_malformed_completion_windows_have_no_length(window: str) -> None:
    assert completion_window_seconds(window) is None


@pytest.mark.parametrize(
    "window", ["²h", "\u0661h", "24h\n", "12345678h", "1.5h", " 1h", "1H", "1hh", "0x1h"]
)
def test_windows_of_non_ascii_or_too_many_digits_have_no_length(window: str) -> None:
    assert completion_window_seconds(window) is None
    with pytest.raises(ValidationError):
        BatchManifest(batch_id="b", endpoint="/e", request_count=1, completion_window=window)


def test_a_manifest_read_from_a_topic_is_not_held_to_a_deployments_longest_window() -> None:
    """The longest window is checked when a batch is created (``build_manifest``), with the
    deployment's setting as validation context; a published manifest is read as it is."""
    record = orjson.dumps(
        {"batch_id": "b", "endpoint": "/e", "request_count": 1, "completion_window": "30d"}
    )
    manifest = parse_manifest(record)
    assert isinstance(manifest, BatchManifest)
    assert manifest.completion_window == "30d"
    with pytest.raises(ValidationError, match="longer than 3d"):
        BatchManifest.model_validate_json(record, context={MAX_COMPLETION_WINDOW_CONTEXT: 259_200})


@pytest.mark.parametrize(
    ("seconds", "text"), [(259_200, "3d"), (5400, "90m"), (7, "7s"), (7200, "2h")]
)
def test_a_window_length_is_written_in_its_largest_unit(seconds: int, text: str) -> None:
    assert completion_window_text(seconds) == text
    assert completion_window_seconds(text) == seconds


def test_the_longest_window_and_latest_creation_still_give_an_expiry() -> None:
    manifest = BatchManifest(
        batch_id="b",
        endpoint="/e",
        request_count=10_000_000,
        completion_window="9999999d",
        created_at=MAX_CREATED_AT,
    )
    window = completion_window_seconds(manifest.completion_window)
    assert window == 9_999_999 * 86_400
    assert manifest.created_at + window < 2**63  # fits a signed 64-bit int (JSON, Kafka, C)


@pytest.mark.parametrize(
    "fields",
    [
        {"created_at": -1},
        {"created_at": MAX_CREATED_AT + 1},
        {"created_at": 2**64},
        {"created_at": "1700000000"},
        {"request_count": 10_000_001},
        {"request_count": 2**64},
        {"request_count": True},
        {"request_count": 1.5},
        {"metadata": {"k" * 65: "v"}},
        {"metadata": {"k": "v" * 513}},
        {"metadata": {f"k{i}": "v" for i in range(17)}},
        {"metadata": {"k": 1}},
        {"completion_window": 24},
    ],
)
def test_manifests_out_of_bounds_are_refused(fields: dict[str, object]) -> None:
    document = {"batch_id": "b", "endpoint": "/e", "request_count": 1, **fields}
    with pytest.raises(ValidationError):
        BatchManifest.model_validate(document)
    reason = parse_manifest(json.dumps(document).encode())
    assert isinstance(reason, str)
    assert next(iter(fields)) in reason  # the reason names the field


def test_openai_limits_are_accepted() -> None:
    metadata = {f"{i:064d}": "v" * 512 for i in range(16)}
    manifest = BatchManifest(
        batch_id="b", endpoint="/e", request_count=1, metadata=metadata, created_at=0
    )
    assert parse_manifest(manifest.model_dump_json().encode()) == manifest


def _manifest_json(**fields: object) -> bytes:
    return json.dumps({"batch_id": "b", "endpoint": "/e", "request_count": 1, **fields}).encode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "tombstone"),
        (b"", "Invalid JSON"),
        (b"garbage", "Invalid JSON"),
        (b"\xff\xfe\x00{", "Invalid JSON"),
        (b'{"batch_id": "b\xe9", "endpoint": "/e", "request_count": 1}', "Invalid JSON"),
        (b"null", "value"),
        (b"[1, 2]", "value"),
        (b"[" * 100_000, "recursion limit"),
        (
            b'{"batch_id": "b", "endpoint": "/e", "request_count": 1, "created_at": 1e400}',
            "created_at",
        ),
        (b'{"batch_id": "b", "endpoint": "/e", "request_count": 1, "extra": 1}', "extra"),
        (_manifest_json(completion_window="\u00b2h"), "completion_window"),
        (_manifest_json(request_count=2**64), "request_count"),
    ],
)
def test_parse_manifest_gives_a_reason_for_any_bad_value(
    value: bytes | None, expected: str
) -> None:
    reason = parse_manifest(value)
    assert isinstance(reason, str)
    assert expected in reason
    assert reason.isascii()
    assert len(reason) <= 500


def test_a_reason_is_short_even_when_every_field_is_wrong() -> None:
    document = {f"\u00e9{'x' * 200}{i}": i for i in range(100)}
    reason = parse_manifest(json.dumps(document).encode())
    assert isinstance(reason, str)
    assert reason.isascii()
    assert len(reason) == 500
    assert reason.endswith("...")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_parse_manifest_never_raises_on_any_bytes(value: bytes) -> None:
    assert isinstance(parse_manifest(value), str | BatchManifest)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"batch_id": st.just("b"), "endpoint": st.just("/e")},
        optional={
            "request_count": st.integers() | st.floats() | st.booleans() | st.text(max_size=5),
            "created_at": st.integers() | st.floats(allow_nan=False) | st.none(),
            "completion_window": st.text(max_size=10),
            "metadata": st.dictionaries(st.text(max_size=70), st.text(max_size=600), max_size=20),
        },
    )
)
def test_a_manifest_that_parses_has_an_expiry_that_never_raises(
    document: dict[str, object],
) -> None:
    try:
        value = json.dumps(document).encode()
    except ValueError:  # infinities: not JSON
        return
    manifest = parse_manifest(value)
    if isinstance(manifest, BatchManifest):
        window = completion_window_seconds(manifest.completion_window)
        assert window is not None
        assert 0 <= manifest.created_at + window < 2**63


def test_a_batch_objects_status_is_the_enum_and_its_json_openais_string() -> None:
    document = {
        "id": "b1",
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        "status": "in_progress",
        "created_at": 1,
        "request_counts": {"total": 1, "completed": 0, "failed": 0},
    }
    batch = BatchObject.model_validate_json(json.dumps(document))
    assert batch.status is BatchStatus.IN_PROGRESS
    assert batch.model_dump(mode="json")["status"] == "in_progress"
    assert json.loads(batch.model_dump_json())["status"] == "in_progress"
    with pytest.raises(ValidationError):
        BatchObject.model_validate({**document, "status": "done"})
