"""The gateway's errors in OpenAI's shape: every field sent, the parameter named as OpenAI names
it, and the OpenAPI document listing the same answers."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
import pytest
from fastapi.exceptions import RequestValidationError

from llm_stream.gateway.errors import (
    EVERY_ROUTE,
    ErrorBody,
    GatewayError,
    error_responses,
    from_validation_error,
    not_found,
    too_large,
    too_many_failures,
)


def _sent(error: GatewayError) -> dict[str, Any]:
    """The body a client receives."""
    body: dict[str, Any] = orjson.loads(bytes(error.response().body))
    return body["error"]


def test_every_field_is_sent_null_when_it_names_nothing() -> None:
    error = GatewayError(HTTPStatus.BAD_REQUEST, "bad")
    assert _sent(error) == {
        "message": "bad",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert error.response().status_code == 400


def test_an_unknown_id_gets_openais_message_on_its_parameter() -> None:
    error = not_found("File", "file-x", param="file_id")
    assert error.status_code == 404
    assert _sent(error)["message"] == "No such File object: file-x"
    assert _sent(error)["param"] == "file_id"


def test_too_many_wrong_keys_is_a_rate_limit_with_retry_after() -> None:
    error = too_many_failures(17)
    response = error.response()
    assert response.status_code == 429
    assert response.headers["retry-after"] == "17"
    assert _sent(error)["code"] == "rate_limit_exceeded"


def test_a_body_over_its_limit_is_a_413_request_too_large() -> None:
    error = too_large("The request body is larger than 10 bytes")
    assert (error.status_code, _sent(error)["code"]) == (413, "request_too_large")


def test_the_document_lists_each_answer_in_openais_shape_with_retry_after_on_429() -> None:
    responses = error_responses(*EVERY_ROUTE, HTTPStatus.NOT_FOUND)
    assert set(responses) == {401, 413, 429, 500, 404}
    assert all(response["model"] is ErrorBody for response in responses.values())
    assert all(response["description"] for response in responses.values())
    assert "Retry-After" in responses[429]["headers"]
    assert "headers" not in responses[404]


def _validation(*errors: dict[str, Any]) -> GatewayError:
    return from_validation_error(RequestValidationError(list(errors)))


@pytest.mark.parametrize(
    ("problem", "message", "param", "code"),
    [
        (
            {"type": "json_invalid", "loc": ("body", 1), "msg": "JSON decode error"},
            "We could not parse the JSON body of your request.",
            None,
            "invalid_json",
        ),
        (
            {"type": "missing", "loc": ("body",), "msg": "Field required"},
            "The request has no body: send its parameters as JSON.",
            None,
            None,
        ),
        (
            {"type": "missing", "loc": ("body", "input_file_id"), "msg": "Field required"},
            "Missing required parameter: 'input_file_id'.",
            "input_file_id",
            "missing_required_parameter",
        ),
        (
            {"type": "extra_forbidden", "loc": ("body", "priority"), "msg": "Extra inputs"},
            "Unrecognized request argument supplied: priority",
            "priority",
            "unknown_parameter",
        ),
        (
            {"type": "less_than_equal", "loc": ("query", "limit"), "msg": "at most 100"},
            "Invalid value for 'limit': at most 100",
            "limit",
            "invalid_value",
        ),
        (
            {"type": "string_type", "loc": ("body", "metadata", "k"), "msg": "not a string"},
            "Invalid value for 'metadata.k': not a string",
            "metadata",
            "invalid_value",
        ),
    ],
)
def test_a_validation_error_is_a_400_naming_its_parameter(
    problem: dict[str, Any], message: str, param: str | None, code: str | None
) -> None:
    error = _validation(problem)
    assert error.status_code == 400
    assert _sent(error) == {
        "message": message,
        "type": "invalid_request_error",
        "param": param,
        "code": code,
    }


def test_only_the_first_validation_problem_is_told() -> None:
    error = _validation(
        {"type": "missing", "loc": ("body", "endpoint"), "msg": "Field required"},
        {"type": "missing", "loc": ("body", "completion_window"), "msg": "Field required"},
    )
    assert _sent(error)["param"] == "endpoint"
