from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.contracts import (
    BatchManifest,
    RequestMessage,
    ResponseData,
    ResultMessage,
    completion_window_seconds,
    is_safe_batch_id,
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
