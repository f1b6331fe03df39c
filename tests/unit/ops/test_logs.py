from __future__ import annotations

import logging

import orjson
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from llm_stream.ops.logs import JsonFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "llm_stream.worker.core", logging.WARNING, __file__, 1, "hi %s", ("x",), None
    )
    record.__dict__.update(extra)
    return record


def test_a_log_line_is_one_json_object_with_context_fields() -> None:
    line = orjson.loads(JsonFormatter().format(_record(batch_id="b1", custom_id="c1")))
    assert line["message"] == "hi x"
    assert line["level"] == "WARNING"
    assert (line["batch_id"], line["custom_id"]) == ("b1", "c1")
    assert "trace_id" not in line


def test_the_current_span_ids_are_included() -> None:
    context = SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(1))
    with trace.use_span(NonRecordingSpan(context)):
        line = orjson.loads(JsonFormatter().format(_record()))
    assert line["trace_id"] == f"{0xABC:032x}"
    assert line["span_id"] == f"{0xDEF:016x}"


def test_httpx_request_lines_are_not_logged_they_name_webhook_urls() -> None:
    """httpx logs each request's URL at INFO; a webhook URL's query string may be a secret."""
    import logging

    from llm_stream.ops.logs import configure_logging

    configure_logging("text", "DEBUG")
    try:
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
    finally:
        configure_logging("text", "INFO")
