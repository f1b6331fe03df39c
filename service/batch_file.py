"""Read and validate an OpenAI batch input file, line by line, before anything is published.

The rules are the OpenAI Batch API's: every line a JSON object with a unique ``custom_id``,
``method`` POST, one supported ``url`` and one ``model`` for the whole file, an object ``body``;
at most 50,000 lines and 200 MB. Validation streams the file, so memory is bounded by the
line limit (one ``custom_id`` set), not by the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from service.contracts import SUPPORTED_ENDPOINTS

MAX_LINES = 50_000
MAX_BYTES = 200 * 1024 * 1024
MAX_REPORTED_PROBLEMS = 20
LINE_FIELDS = {"custom_id", "method", "url", "body"}


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


def _line_problems(document: Any) -> list[str]:
    if not isinstance(document, dict):
        return ["not a JSON object"]
    problems = []
    custom_id = document.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        problems.append("custom_id must be a non-empty string")
    if document.get("method") != "POST":
        problems.append(f"method must be POST, not {document.get('method')!r}")
    if document.get("url") not in SUPPORTED_ENDPOINTS:
        supported = ", ".join(SUPPORTED_ENDPOINTS)
        problems.append(f"url {document.get('url')!r} is not one of {supported}")
    if not isinstance(document.get("body"), dict):
        problems.append("body must be a JSON object")
    unknown = sorted(set(document) - LINE_FIELDS)
    if unknown:
        problems.append(f"unknown fields {unknown}")
    return problems


def validate_batch_file(path: Path) -> FileCheck:
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
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            check.add(number, f"not valid JSON ({error})")
            continue
        problems = _line_problems(document)
        if isinstance(document, dict):
            custom_id, url = document.get("custom_id"), document.get("url")
            if isinstance(custom_id, str) and custom_id in seen:
                problems.append(f"duplicate custom_id {custom_id!r}")
            elif isinstance(custom_id, str):
                seen.add(custom_id)
            if check.endpoint is None and url in SUPPORTED_ENDPOINTS:
                check.endpoint = url
            elif url in SUPPORTED_ENDPOINTS and url != check.endpoint:
                problems.append(f"url {url!r} differs from the batch's {check.endpoint!r}")
            body = document.get("body")
            line_model = body.get("model") if isinstance(body, dict) else None
            if model is None:
                model = line_model
            elif line_model != model:
                problems.append(f"model {line_model!r} differs from the batch's {model!r}")
        for problem in problems:
            check.add(number, problem)
    return check
