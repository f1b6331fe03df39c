"""Error bodies in vLLM's exact shape, and ``describe``: a value named in a message is never
repeated in full, however large."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from llm_stream.batch.error_bodies import (
    describe,
    error_response,
    method_not_allowed,
    response_too_large,
    streaming_refused,
    unsupported_endpoint,
)
from llm_stream.contracts import SUPPORTED_ENDPOINTS


def _deep(levels: int) -> object:
    value: object = "x"
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("x" * 600_000, id="long-string"),
        pytest.param("\x00" * 600_000, id="long-escaped-string"),
        pytest.param(["x" * 600_000] * 3, id="list-of-long-strings"),
        pytest.param({f"k{i}": i for i in range(100_000)}, id="big-dict"),
        pytest.param(_deep(990), id="deep-list"),
        pytest.param(10**5000, id="int-of-5001-digits"),
    ],
)
def test_describe_is_bounded(value: object) -> None:
    assert len(describe(value)) < 200


def test_describe_keeps_short_values_exact() -> None:
    assert describe("abc") == "'abc'"
    assert describe(None) == "None"
    assert describe(["a", 1]) == "['a', 1]"


def test_a_long_string_is_cut_and_says_how_long_it_was() -> None:
    text = describe("x" * 600_000, limit=50)
    assert text.startswith("'xxx")
    assert text.endswith("… (600000 chars)")


def test_an_error_body_has_vllms_four_fields_and_the_status_as_its_code() -> None:
    response = error_response(HTTPStatus.NOT_FOUND, "gone", param="url")
    assert (response.status_code, response.request_id) == (404, "")
    assert response.body == {
        "error": {"message": "gone", "type": "NotFoundError", "param": "url", "code": 404}
    }
    typed = error_response(HTTPStatus.BAD_REQUEST, "bad", error_type="BadRequestError")
    assert typed.body is not None
    assert (typed.body["error"]["type"], typed.body["error"]["param"]) == ("BadRequestError", None)


def test_an_unsupported_endpoint_is_a_404_that_lists_the_supported_ones() -> None:
    response = unsupported_endpoint("/v1/moderations")
    assert response.status_code == 404
    assert response.body is not None
    message = response.body["error"]["message"]
    assert message.startswith("Unsupported endpoint '/v1/moderations'.")
    assert all(endpoint in message for endpoint in SUPPORTED_ENDPOINTS)
    assert response.body["error"]["param"] == "url"


def test_a_method_other_than_post_is_a_405_naming_it() -> None:
    response = method_not_allowed("GET")
    assert response.status_code == 405
    assert response.body is not None
    assert (
        response.body["error"]["message"] == "Method 'GET' is not allowed; batch requests use POST."
    )
    assert response.body["error"]["param"] == "method"


def test_stream_mode_is_refused_with_400_on_its_parameter() -> None:
    response = streaming_refused()
    assert response.status_code == 400
    assert response.body is not None
    assert response.body["error"]["param"] == "stream"


def test_a_response_too_large_keeps_its_request_id_and_names_both_limits() -> None:
    response = response_too_large(2_000_000, 1_048_576, "req-7")
    assert (response.status_code, response.request_id) == (413, "req-7")
    assert response.body is not None
    error = response.body["error"]
    assert error["type"] == "ResponseTooLargeError"
    assert "2000000 bytes after compression, over the 1048576-byte limit" in error["message"]
    assert "LLM_STREAM_MAX_MESSAGE_BYTES" in error["message"]
