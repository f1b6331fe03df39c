"""Read and validate an OpenAI batch input file, line by line, before anything is published.

Each line is judged by ``request_line``'s rules (the worker's own), its size included, so a file
that passes is published whole. On top of them, the OpenAI Batch API's file rules: unique
``custom_id``s, one ``url`` and one ``model`` for the whole file, at most 50,000 lines and
200 MB. Validation streams the file, so memory is bounded by the line limit (one ``custom_id``
set), not by the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from llm_stream.batch import request_line
from llm_stream.batch.request_line import Problem
from llm_stream.contracts import SUPPORTED_ENDPOINTS
from llm_stream.engine.error_bodies import describe

MAX_LINES = 50_000
MAX_BYTES = 200 * 1024 * 1024
MAX_REPORTED_PROBLEMS = 20


@dataclass
class FileCheck:
    """Outcome of validating a batch input file."""

    line_count: int = 0
    endpoint: str | None = None
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0 and self.line_count > 0

    def add(self, line_number: int, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(f"line {line_number}: {message}")

    def report(self) -> str:
        if self.line_count == 0 and not self.problem_count:
            return "the file holds no request lines"
        more = self.problem_count - len(self.problems)
        tail = [f"... and {more} more"] if more > 0 else []
        return "\n".join([*self.problems, *tail])


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line_number, raw_line)`` for every non-blank line, numbered from 1."""
    with path.open("rb") as file:
        for number, raw in enumerate(file, start=1):
            if raw.strip():
                yield number, raw


def validate_batch_file(
    path: Path,
    *,
    batch_id: str | None = None,
    max_bytes: int = request_line.DEFAULT_MAX_RECORD_BYTES,
) -> FileCheck:
    """Every problem of the file, by line; ``batch_id`` and ``max_bytes`` size each record as
    it will be published (no ``batch_id``: sized for the longest one)."""
    check = FileCheck()
    if path.stat().st_size > MAX_BYTES:
        check.add(0, f"file is larger than {MAX_BYTES // (1024 * 1024)} MB")
        return check
    seen: set[str] = set()
    model: object = None
    for number, raw in iter_lines(path):
        check.line_count += 1
        if check.line_count > MAX_LINES:
            check.add(number, f"more than {MAX_LINES} lines")
            break
        document = request_line.decode(raw)
        if isinstance(document, Problem):
            check.add(number, document.message)
            continue
        problems = request_line.check_line(document, max_bytes=max_bytes, batch_id=batch_id)
        messages = [problem.message for problem in problems]
        custom_id, url = document.get("custom_id"), document.get("url")
        if isinstance(custom_id, str) and custom_id in seen:
            messages.append(request_line.duplicate_problem(custom_id).message)
        elif isinstance(custom_id, str):
            seen.add(custom_id)
        if check.endpoint is None and url in SUPPORTED_ENDPOINTS:
            check.endpoint = url
        elif url in SUPPORTED_ENDPOINTS and url != check.endpoint:
            messages.append(f"url {describe(url)} differs from the batch's {check.endpoint!r}")
        body = document.get("body")
        line_model = body.get("model") if isinstance(body, dict) else None
        if model is None:
            model = line_model
        elif line_model != model:
            messages.append(
                f"model {describe(line_model)} differs from the batch's {describe(model)}"
            )
        for message in messages:
            check.add(number, message)
    return check
