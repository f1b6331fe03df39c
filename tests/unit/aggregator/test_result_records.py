"""A result record read: the result and its output line, or None for a record that is not one,
counted and logged by where it is, never by what it holds."""

from __future__ import annotations

import logging

import orjson
import pytest
from prometheus_client import REGISTRY

from llm_stream.aggregator.result_records import parse_result
from llm_stream.batch.result_lines import output_line, result_message
from llm_stream.contracts import ResponseData
from llm_stream.protocols import IncomingRecord


def _invalid_total() -> float:
    return REGISTRY.get_sample_value("llm_stream_aggregator_results_invalid_total") or 0.0


def test_a_result_is_read_with_its_output_line() -> None:
    result = result_message("b1", "c1", ResponseData(status_code=200, request_id="r", body={}))
    parsed = parse_result(IncomingRecord("results", 0, 7, result.model_dump_json().encode()))
    assert parsed is not None
    read, line = parsed
    assert read == result
    assert line == output_line(result)
    assert orjson.loads(line)["custom_id"] == "c1"


@pytest.mark.parametrize(
    "value",
    [None, b"", b"not json", b"[]", b'{"batch_id": "b1"}', b'{"batch_id": "../x", "id": 1}'],
)
def test_a_record_that_is_not_a_result_is_none_and_counted(value: bytes | None) -> None:
    before = _invalid_total()
    assert parse_result(IncomingRecord("results", 2, 9, value)) is None
    assert _invalid_total() - before == 1


def test_an_invalid_result_is_logged_by_its_place_without_its_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "a prompt nobody should find in the logs"
    # The one wrong field holds it: a message that quoted the input would show it.
    value = orjson.dumps({"batch_id": "b1", "id": "x", "custom_id": [secret], "response": None})
    with caplog.at_level(logging.WARNING, logger="llm_stream.aggregator.result_records"):
        parse_result(IncomingRecord("results", 2, 9, value))
    assert "skipping invalid result results[2]@9" in caplog.text
    assert secret not in caplog.text
