"""A batch exported for the people who use it: ``finetune`` (OpenAI's chat fine-tuning JSONL),
``label-studio`` (the tasks file, for an import by hand) or ``parquet`` (a row per line with
the request, the answer, usage and the judgement).

Every format is streamed: the requests and judgements wait in a ``JoinIndex`` on disk, the
answers come from the store a line at a time and each row is written as it is made (Parquet in
row groups), so memory does not grow with the batch.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from llm_stream.contracts import Judgement
from llm_stream.curation import finetune, schemas
from llm_stream.curation.joined import (
    JoinedLine,
    JoinIndex,
    answered_lines,
    batch_metadata,
    input_lines,
)
from llm_stream.curation.judgement_index import Forgotten
from llm_stream.curation.label_studio_tasks import task_of
from llm_stream.errors import LlmStreamError
from llm_stream.files.store import FileStore

Format = Literal["finetune", "label-studio", "parquet"]
FORMATS: tuple[Format, ...] = ("finetune", "label-studio", "parquet")
#: The lines a finetune export keeps unless told otherwise: those a reviewer passed.
PASSED = frozenset({"accepted", "gold"})
#: Stands for lines nobody judged, among the verdicts an export keeps.
UNJUDGED = "unjudged"
VERDICTS = frozenset({"accepted", "rejected", "gold", UNJUDGED})
_ROWS_PER_GROUP = 2000

PARQUET_SCHEMA = pa.schema(
    [
        ("custom_id", pa.string()),
        ("model", pa.string()),
        ("url", pa.string()),
        ("request", pa.string()),
        ("answer", pa.string()),
        ("status_code", pa.int32()),
        ("error", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("total_tokens", pa.int64()),
        ("verdict", pa.string()),
        ("corrected", pa.string()),
        ("note", pa.string()),
        ("reviewer", pa.string()),
        ("judged_at", pa.float64()),
        # Empty: the answer validates; null: the line has no schema.
        ("schema_problems", pa.string()),
    ]
)


class InvalidExampleError(LlmStreamError, ValueError):
    """A fine-tuning line broke OpenAI's format: nothing invalid is ever written."""


@dataclass
class ExportCount:
    written: int = 0
    #: Lines left out: not kept by verdict, or no answer to train on.
    skipped: int = 0
    #: Lines left out because their answer broke its schema (``valid_only``).
    invalid: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)


def verdict_of(line: JoinedLine) -> str:
    return line.judgement.verdict if line.judgement is not None else UNJUDGED


@dataclass(frozen=True)
class NamedSchema:
    """The batch's named schema (``--schema``, else its metadata's), and where names lie."""

    name: str | None = None
    folder: Path | None = None


def batch_schema(
    store: FileStore, batch_id: str, name: str | None, folder: Path | None
) -> NamedSchema:
    """The batch's named schema: ``name`` if given, else its metadata's; checked now, so a
    name that names none (``SchemaNotFoundError``) stops an export before it writes."""
    named = NamedSchema(name or schemas.metadata_schema(batch_metadata(store, batch_id)), folder)
    if named.name is not None:
        schemas.load_schema(named.folder, named.name)
    return named


def schema_problems(line: JoinedLine, named: NamedSchema) -> list[str] | None:
    """Why the line's final answer breaks its schema (``schemas.line_schema``); None: the
    line has no schema."""
    schema = schemas.line_schema(line.request, named.name, named.folder)
    if schema is None:
        return None
    return schemas.answer_problems(schema, line.final_answer)


def _valid(
    lines: Iterable[JoinedLine], named: NamedSchema, count: ExportCount
) -> Iterator[JoinedLine]:
    """Only the lines whose answer validates (a line with no schema passes)."""
    for line in lines:
        if schema_problems(line, named):
            count.invalid += 1
        else:
            yield line


def _kept(
    lines: Iterable[JoinedLine], keep: Collection[str] | None, count: ExportCount
) -> Iterator[JoinedLine]:
    for line in lines:
        verdict = verdict_of(line)
        count.verdicts[verdict] = count.verdicts.get(verdict, 0) + 1
        if keep is None or verdict in keep:
            yield line
        else:
            count.skipped += 1


def write_finetune(lines: Iterable[JoinedLine], out: BinaryIO, count: ExportCount) -> None:
    for line in lines:
        example = finetune.example_of(line)
        if example is None:
            count.skipped += 1
            continue
        problems = finetune.problems(example)
        if problems:
            raise InvalidExampleError(f"line {line.custom_id!r}: {'; '.join(problems)}")
        out.write(orjson.dumps(example) + b"\n")
        count.written += 1


def write_label_studio(
    lines: Iterable[JoinedLine],
    out: BinaryIO,
    count: ExportCount,
    batch_id: str,
    named: NamedSchema | None = None,
) -> None:
    """A JSON list of tasks, one task per line of the file."""
    out.write(b"[")
    for line in lines:
        out.write(b"\n" if count.written == 0 else b",\n")
        task = task_of(line, batch_id, schema_problems(line, named or NamedSchema()))
        out.write(orjson.dumps(task))
        count.written += 1
    out.write(b"\n]\n")


def _row(line: JoinedLine, named: NamedSchema) -> dict[str, Any]:
    body = line.body or {}
    found = body.get("usage")
    usage: dict[str, Any] = found if isinstance(found, dict) else {}
    judgement = line.judgement
    request = line.request or {}
    return {
        "custom_id": line.custom_id,
        "model": body.get("model") or request.get("model"),
        "url": line.url,
        "request": orjson.dumps(line.request).decode() if line.request is not None else None,
        "answer": line.answer,
        "status_code": (line.response or {}).get("status_code"),
        "error": orjson.dumps(line.error).decode() if line.error is not None else None,
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "total_tokens": usage.get("total_tokens"),
        "verdict": judgement.verdict if judgement else None,
        "corrected": judgement.corrected if judgement else None,
        "note": judgement.note if judgement else None,
        "reviewer": judgement.reviewer if judgement else None,
        "judged_at": judgement.judged_at if judgement else None,
        "schema_problems": _joined(schema_problems(line, named)),
    }


def _joined(problems: list[str] | None) -> str | None:
    return None if problems is None else "; ".join(problems)


def write_parquet(
    lines: Iterable[JoinedLine],
    out: BinaryIO,
    count: ExportCount,
    named: NamedSchema | None = None,
) -> None:
    with pq.ParquetWriter(out, PARQUET_SCHEMA, compression="zstd") as writer:
        rows: list[dict[str, Any]] = []
        for line in lines:
            rows.append(_row(line, named or NamedSchema()))
            if len(rows) == _ROWS_PER_GROUP:
                writer.write_table(pa.Table.from_pylist(rows, schema=PARQUET_SCHEMA))
                count.written += len(rows)
                rows = []
        if rows:
            writer.write_table(pa.Table.from_pylist(rows, schema=PARQUET_SCHEMA))
            count.written += len(rows)


def _take(index: JoinIndex, judgement: Judgement | Forgotten) -> None:
    if isinstance(judgement, Forgotten):
        index.forget(judgement.custom_id)
    else:
        index.add_judgement(judgement)


async def export_batch(
    store: FileStore,
    batch_id: str,
    judgements: AsyncIterable[Judgement | Forgotten] | Iterable[Judgement | Forgotten],
    fmt: Format,
    out: BinaryIO,
    *,
    keep: Collection[str] | None = None,
    input_path: Path | None = None,
    schema: str | None = None,
    schemas_dir: Path | None = None,
    valid_only: bool = False,
) -> ExportCount:
    """Write the batch in ``fmt`` to ``out``. ``keep``: the verdicts kept (``UNJUDGED`` for
    lines nobody judged); default: ``PASSED`` for finetune, every line otherwise.
    ``input_path``: the batch's input file, for a batch not created from an upload.
    ``schema``: the name of the batch's answer schema in ``schemas_dir`` (default: the one its
    metadata names); ``valid_only``: keep only lines whose answer validates (against the
    request's ``response_format`` schema, else the named one). ``SchemaNotFoundError``, before
    anything is written, for a name that names no schema."""
    if keep is None and fmt == "finetune":
        keep = PASSED
    named = batch_schema(store, batch_id, schema, schemas_dir)
    count = ExportCount()
    with JoinIndex() as index:
        index.add_requests(input_lines(store, batch_id, input_path))
        if isinstance(judgements, AsyncIterable):
            async for judgement in judgements:
                _take(index, judgement)
        else:
            for judgement in judgements:
                _take(index, judgement)
        index.commit()
        lines = _kept(index.join(answered_lines(store, batch_id)), keep, count)
        if valid_only:
            lines = _valid(lines, named, count)
        if fmt == "finetune":
            write_finetune(lines, out, count)
        elif fmt == "label-studio":
            write_label_studio(lines, out, count, batch_id, named)
        else:
            write_parquet(lines, out, count, named)
    return count
