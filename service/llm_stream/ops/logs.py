"""Structured JSON logs that carry the current trace and span ids.

One JSON object per line lets a log pipeline join logs to traces (``trace_id``) and to batches
(``batch_id``/``custom_id``, passed with ``extra=``).
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import trace

#: The HTTP request being handled (the gateway's ``X-Request-ID``), on each of its log lines.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

CONTEXT_FIELDS = (
    "batch_id",
    "custom_id",
    "topic",
    "partition",
    "offset",
    "error_kind",
    "exit_code",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            document["trace_id"] = f"{span_context.trace_id:032x}"
            document["span_id"] = f"{span_context.span_id:016x}"
        if (request_id := REQUEST_ID.get()) is not None:
            document["request_id"] = request_id
        for name in CONTEXT_FIELDS:
            if hasattr(record, name):
                document[name] = getattr(record, name)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


def configure_logging(log_format: str, level: str = "INFO") -> None:
    """JSON lines for machines (``json``), plain text for people (``text``)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request's URL at INFO: a webhook URL's query string may be a secret.
    logging.getLogger("httpx").setLevel(max(root.level, logging.WARNING))
