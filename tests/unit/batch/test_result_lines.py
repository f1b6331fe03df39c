from __future__ import annotations

import json
import math

import orjson
import pytest

from llm_stream.batch.error_bodies import unsupported_endpoint
from llm_stream.batch.result_lines import (
    BATCH_CANCELLED,
    cancelled_result,
    local_output_line,
    output_line,
    result_message,
    with_request_id,
)
from llm_stream.contracts import ResponseData, ResultMessage

OK = ResponseData(status_code=200, request_id="cmpl-1", body={"choices": []})


def test_a_result_message_gets_a_line_id_and_keeps_the_engines_request_id() -> None:
    result = result_message("b1", "c1", OK)
    assert (result.batch_id, result.custom_id, result.response) == ("b1", "c1", OK)
    assert result.id.startswith("batch_req_")
    assert result.error is None
    assert result.succeeded
    assert result_message("b1", "c1", OK).id != result.id


def test_a_response_without_a_request_id_gets_one() -> None:
    refused = unsupported_endpoint("/nope")
    assert refused.request_id == ""
    result = result_message("b1", "c1", refused)
    assert result.response is not None
    assert result.response.request_id.startswith("req_")
    assert not result.succeeded
    assert with_request_id(OK) is OK


def test_the_output_line_is_the_openai_line_without_the_batch_id() -> None:
    result = result_message("b1", "c1", OK)
    line = output_line(result)
    assert line.endswith(b"\n")
    assert orjson.loads(line) == {
        "id": result.id,
        "custom_id": "c1",
        "response": {"status_code": 200, "request_id": "cmpl-1", "body": {"choices": []}},
        "error": None,
    }


def test_an_integer_beyond_64_bits_is_still_written() -> None:
    huge = ResponseData(status_code=200, request_id="r", body={"n": 2**70})
    line = output_line(ResultMessage(batch_id="b1", id="x", custom_id="c1", response=huge))
    assert json.loads(line)["response"]["body"] == {"n": 2**70}


@pytest.mark.parametrize(
    "result",
    [
        result_message("b1", "c1", OK),
        result_message("b1", "c2", unsupported_endpoint("/nope")),
        cancelled_result("b1", "c3"),
        ResultMessage(
            batch_id="b1",
            id="x",
            custom_id="ü 😀",
            response=ResponseData(status_code=200, request_id="r", body={"t": "é", "f": 0.1}),
        ),
    ],
    ids=["answer", "error-body", "cancelled", "unicode"],
)
def test_the_output_line_holds_every_field_of_the_contract_but_the_batch_id(
    result: ResultMessage,
) -> None:
    assert orjson.loads(output_line(result)) == result.model_dump(mode="json", exclude={"batch_id"})


def test_an_infinity_or_nan_in_a_body_is_written_as_null() -> None:
    odd = ResponseData(status_code=200, request_id="r", body={"a": math.inf, "b": math.nan})
    line = output_line(ResultMessage(batch_id="b1", id="x", custom_id="c1", response=odd))
    assert orjson.loads(line)["response"]["body"] == {"a": None, "b": None}


def test_a_local_line_has_the_shape_of_a_workers_line() -> None:
    local = orjson.loads(local_output_line("c1", unsupported_endpoint("/nope")))
    published = orjson.loads(output_line(result_message("b1", "c1", unsupported_endpoint("/y"))))
    assert list(local) == list(published) == ["id", "custom_id", "response", "error"]
    assert local["id"].startswith("batch_req_")
    assert local["response"]["request_id"].startswith("req_")
    assert local["response"]["status_code"] == 404


def test_a_local_line_may_have_no_custom_id() -> None:
    assert orjson.loads(local_output_line(None, unsupported_endpoint("/x")))["custom_id"] is None


def test_a_cancelled_request_is_an_error_line_without_a_response() -> None:
    result = cancelled_result("b1", "c1")
    assert not result.succeeded
    line = orjson.loads(output_line(result))
    assert line["id"].startswith("batch_req_")
    assert (line["custom_id"], line["response"]) == ("c1", None)
    assert line["error"]["code"] == BATCH_CANCELLED == "batch_cancelled"
    assert "cancelled" in line["error"]["message"]
    assert "batch_id" not in line
