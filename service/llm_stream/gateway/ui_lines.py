"""A page of a batch's output or error lines, found by ``custom_id``.

The file is read through the Files API's own ``file_content`` (so the same rule decides whether
a file exists), streamed line by line: only the lines of the page asked for are kept, however
large the file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi.responses import StreamingResponse

from llm_stream.batch.result_lines import output_line
from llm_stream.curation.joined import answer_text
from llm_stream.gateway import files_api
from llm_stream.gateway.callers import OPEN, Caller
from llm_stream.gateway.state import Gateway

#: Lines shown per page.
PAGE_LINES = 50
#: How much of an answer or error the table shows before the line's full JSON.
SUMMARY_CHARS = 160


@dataclass(frozen=True)
class ResultLine:
    number: int
    custom_id: str
    status_code: int | None
    summary: str
    json: str
    #: The model's whole answer (None: an error, or no text).
    answer: str | None = None
    #: Why the answer breaks its schema (``review_lines``): empty when it validates, None
    #: when the line has no schema or was not checked.
    schema_problems: list[str] | None = None


@dataclass(frozen=True)
class LinesPage:
    lines: list[ResultLine]
    #: Lines whose custom_id contains the search (every line without one).
    matched: int
    page: int
    pages: int


async def read_page(
    gateway: Gateway, file_id: str, *, search: str, page: int, caller: Caller = OPEN
) -> LinesPage:
    """Page ``page`` (from 1) of the file's lines whose ``custom_id`` contains ``search``
    (case-insensitive). Raises the Files API's 404 for a file that is not there or not
    ``caller``'s to see (the page passes its session's caller)."""
    wanted = search.strip().casefold()
    first = (max(page, 1) - 1) * PAGE_LINES
    kept: list[ResultLine] = []
    matched = 0
    number = 0
    async for raw in lines_of(await files_api.file_content(gateway, caller, file_id)):
        number += 1
        if not raw.strip():
            continue
        parsed = _parse(raw)
        custom_id = str(parsed.get("custom_id") or "")
        if wanted and wanted not in custom_id.casefold():
            continue
        if first <= matched < first + PAGE_LINES:
            kept.append(_line(number, custom_id, parsed, raw))
        matched += 1
    pages = max(1, -(-matched // PAGE_LINES))
    return LinesPage(lines=kept, matched=matched, page=max(page, 1), pages=pages)


async def results_so_far(gateway: Gateway, batch_id: str, created_at: int) -> list[ResultLine]:
    """The first page of a running batch's lines on the results topic (before its files
    exist), numbered in the order they arrived."""
    found = await gateway.stream.results_so_far(
        batch_id, created_at=created_at, after=None, limit=PAGE_LINES
    )
    shown = []
    for number, result in enumerate(found.results, 1):
        raw = output_line(result)
        shown.append(_line(number, result.custom_id, _parse(raw), raw))
    return shown


async def lines_of(response: StreamingResponse) -> AsyncIterator[bytes]:
    """A file's content (``files_api.file_content``) a line at a time."""
    pending = b""
    async for chunk in response.body_iterator:
        data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
        pending += data
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line
    if pending:
        yield pending


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _line(number: int, custom_id: str, parsed: dict[str, Any], raw: bytes) -> ResultLine:
    response = parsed.get("response") if isinstance(parsed.get("response"), dict) else None
    status = response.get("status_code") if response else None
    pretty = orjson.dumps(parsed, option=orjson.OPT_INDENT_2).decode() if parsed else None
    return ResultLine(
        number=number,
        custom_id=custom_id,
        status_code=status if isinstance(status, int) else None,
        summary=_summary(parsed)[:SUMMARY_CHARS] if parsed else "(not a JSON object)",
        json=pretty or raw.decode(errors="replace"),
        answer=answer_text(response.get("body")) if response else None,
    )


def _summary(parsed: dict[str, Any]) -> str:
    """The answer's text, else the error's message: what a reader looks for first."""
    error = parsed.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    response = parsed.get("response")
    body = response.get("body") if isinstance(response, dict) else None
    if not isinstance(body, dict):
        return ""
    if isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))
    return answer_text(body) or ""
