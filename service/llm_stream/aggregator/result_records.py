"""A result record read: the result and its output line, or why the record is not one."""

from __future__ import annotations

import logging

import pydantic

from llm_stream.batch.result_lines import output_line
from llm_stream.contracts import ResultMessage
from llm_stream.ops import metrics
from llm_stream.protocols import IncomingRecord

logger = logging.getLogger(__name__)

_READ_RESULT = ResultMessage.__pydantic_validator__  # model_validate_json minus its wrapper


def parse_result(record: IncomingRecord) -> tuple[ResultMessage, bytes] | None:
    """The result and its output line; None (counted, logged) for a record that is not."""
    try:
        result: ResultMessage = _READ_RESULT.validate_json(record.value or b"")
        return result, output_line(result)
    except ValueError as error:  # pydantic's ValidationError is one
        metrics.RESULTS_INVALID.inc()
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        reason: object = error
        if isinstance(error, pydantic.ValidationError):
            reason = error.errors(include_url=False, include_input=False)[:1]
        logger.warning("skipping invalid result %s: %s", where, reason)
        return None
