"""Read and validate an OpenAI batch input file, line by line, before anything is published.

Each line is judged by ``request_line``'s rules (the worker's own), its size included, so a file
that passes is published whole. On top of them, the OpenAI Batch API's file rules: unique
``custom_id``s, one ``url`` and one ``model`` for the whole file (several models where the
deployment allows them), at most 50,000 lines and 200 MB. Validation streams the file, a
bounded piece at a time, so memory is bounded by the line size limit and the line count limit
(one ``custom_id`` set), never by the file or by its longest line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from llm_stream.batch import request_line
from llm_stream.batch.error_bodies import describe
from llm_stream.batch.request_line import Problem
from llm_stream.batch.token_estimate import estimate_input_tokens
from llm_stream.contracts import MAX_BATCH_MODELS, SUPPORTED_ENDPOINTS

MAX_LINES = 50_000
MAX_BYTES = 200 * 1024 * 1024
MAX_REPORTED_PROBLEMS = 20
#: Bytes read at a time while skipping the rest of an over-long line.
_SKIP_PIECE_BYTES = 64 * 1024


@dataclass
class FileCheck:
    """Outcome of validating a batch input file."""

    line_count: int = 0
    endpoint: str | None = None
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    #: Each model the lines name, with the number of the first line naming it.
    models: dict[str, int] = field(default_factory=dict)
    #: The lines' estimated input tokens (``token_estimate``) by the model each names.
    input_tokens: dict[str, int] = field(default_factory=dict)

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


def iter_lines(
    path: Path, max_line_bytes: int = request_line.DEFAULT_MAX_LINE_BYTES
) -> Iterator[tuple[int, bytes | Problem]]:
    """``(line_number, raw_line)`` for every non-blank line, numbered from 1; a line longer
    than ``max_line_bytes`` comes as its ``Problem`` instead.

    Lines are read at most ``max_line_bytes + 1`` bytes at a time: an over-long line is
    skipped to its end in small pieces, never held whole, so one line of any length costs
    bounded memory.
    """
    with path.open("rb") as file:
        number = 0
        while raw := file.readline(max_line_bytes + 1):
            number += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                size = len(raw) + _skip_rest_of_line(file)
                yield number, request_line.line_size_problem(size, max_line_bytes)
            elif raw.strip():
                yield number, raw


def _skip_rest_of_line(file: BinaryIO) -> int:
    """Read past the end of the current line; its remaining bytes, without the newline."""
    skipped = 0
    while piece := file.readline(_SKIP_PIECE_BYTES):
        if piece.endswith(b"\n"):
            return skipped + len(piece) - 1
        skipped += len(piece)
    return skipped


def read_requests(
    path: Path, max_line_bytes: int = request_line.DEFAULT_MAX_LINE_BYTES
) -> Iterator[dict[str, Any]]:
    """The lines of a file ``validate_batch_file`` passed, parsed one at a time as they are
    published; ValueError if the file no longer passes (changed since)."""
    for number, raw in iter_lines(path, max_line_bytes):
        document = raw if isinstance(raw, Problem) else request_line.decode(raw)
        if isinstance(document, Problem):
            raise ValueError(f"{path}, line {number}: {document.message}")
        yield document


def validate_batch_file(
    path: Path,
    *,
    batch_id: str | None = None,
    max_bytes: int = request_line.DEFAULT_MAX_RECORD_BYTES,
    max_line_bytes: int = request_line.DEFAULT_MAX_LINE_BYTES,
    allow_mixed_models: bool = False,
) -> FileCheck:
    """Every problem of the file, by line; ``batch_id`` and ``max_bytes`` size each record as
    it will be published (no ``batch_id``: sized for the longest one), ``max_line_bytes``
    each line as written; ``allow_mixed_models``: up to ``MAX_BATCH_MODELS`` models."""
    check = FileCheck()
    if path.stat().st_size > MAX_BYTES:
        check.add(0, f"file is larger than {MAX_BYTES // (1024 * 1024)} MB")
        return check
    seen: set[str] = set()
    model: object = None
    for number, raw in iter_lines(path, max_line_bytes):
        check.line_count += 1
        if check.line_count > MAX_LINES:
            check.add(number, f"more than {MAX_LINES} lines")
            break
        document = raw if isinstance(raw, Problem) else request_line.decode(raw)
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
        elif line_model != model and not allow_mixed_models:
            messages.append(
                f"model {describe(line_model)} differs from the batch's {describe(model)}"
            )
        named = request_line.line_model(document)  # a model a manifest can carry
        if named is not None and named not in check.models:
            if len(check.models) < MAX_BATCH_MODELS:
                check.models[named] = number
            else:
                messages.append(f"more than {MAX_BATCH_MODELS} models in one batch")
        if named is not None and named in check.models:
            tokens = estimate_input_tokens(body)
            check.input_tokens[named] = check.input_tokens.get(named, 0) + tokens
        for message in messages:
            check.add(number, message)
    return check
