"""A batch's lines joined by ``custom_id``: the request, the answer (or error), the judgement.

The input file, the output and error files and the judgements each come in their own order, so
a join in memory would hold a whole batch. Here the requests and judgements go to a SQLite
file in a private temporary directory (a small page cache: its pages stay on disk), and the
output and error files are streamed past it, one line at a time: memory stays flat in the
batch's size, from a directory or from S3 alike.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from llm_stream.contracts import Judgement
from llm_stream.errors import LlmStreamError
from llm_stream.files.store import BatchFile, FileStore, file_id

#: Each connection's page cache (KiB).
_CACHE_KIB = 2048
#: Rows written per transaction.
_ROWS_PER_COMMIT = 5000


class MissingBatchFilesError(LlmStreamError, FileNotFoundError):
    """The batch's output, or its input file, is not in the store."""


@dataclass(frozen=True)
class JoinedLine:
    """One answered line of a batch."""

    custom_id: str
    #: The request's body (its ``messages``, ``model``, ...); None when the input is unknown.
    request: dict[str, Any] | None
    url: str | None
    #: The output line's ``response`` (``status_code``, ``body``); None for an error line.
    response: dict[str, Any] | None
    error: dict[str, Any] | None
    judgement: Judgement | None

    @property
    def body(self) -> dict[str, Any] | None:
        if self.response is None:
            return None
        body = self.response.get("body")
        return body if isinstance(body, dict) else None

    @property
    def answer(self) -> str | None:
        return answer_text(self.body)

    @property
    def final_answer(self) -> str | None:
        """The reviewer's corrected answer where there is one, else the model's."""
        if self.judgement is not None and self.judgement.corrected is not None:
            return self.judgement.corrected
        return self.answer


def answer_text(body: Any) -> str | None:
    """The model's answer in a response body, as text: a chat message's content or a
    completion's text (None: the body holds neither)."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    first = choices[0]
    message = first.get("message")
    if isinstance(message, dict) and isinstance(message.get("content"), str):
        return str(message["content"])
    text = first.get("text")
    return text if isinstance(text, str) else None


class JoinIndex:
    """Requests and judgements of one batch by ``custom_id``, on disk; a context manager."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="llm-stream-join-")
        self._db = sqlite3.connect(Path(self._dir.name) / "join.sqlite")
        self._db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE requests (id TEXT PRIMARY KEY, url TEXT, body BLOB)")
        self._db.execute("CREATE TABLE judgements (id TEXT PRIMARY KEY, at REAL, value BLOB)")

    def __enter__(self) -> JoinIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()

    def add_requests(self, lines: Iterable[bytes]) -> int:
        """Index an OpenAI batch input file's lines; how many."""
        count = 0
        for raw in lines:
            if not raw.strip():
                continue
            line = orjson.loads(raw)
            body = orjson.dumps(line.get("body"))
            self._db.execute(
                "INSERT OR REPLACE INTO requests VALUES (?, ?, ?)",
                (str(line.get("custom_id")), line.get("url"), body),
            )
            count += 1
            if count % _ROWS_PER_COMMIT == 0:
                self._db.commit()
        self._db.commit()
        return count

    def add_judgement(self, judgement: Judgement) -> None:
        """Keep the line's latest judgement (by ``judged_at``; the later record on a tie)."""
        self._db.execute(
            "INSERT INTO judgements VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
            "at = excluded.at, value = excluded.value WHERE excluded.at >= judgements.at",
            (judgement.custom_id, judgement.judged_at, judgement.model_dump_json().encode()),
        )

    def forget(self, custom_id: str) -> None:
        """A tombstone: the line's judgement is deleted."""
        self._db.execute("DELETE FROM judgements WHERE id = ?", (custom_id,))

    def commit(self) -> None:
        self._db.commit()

    def join(self, lines: Iterable[bytes]) -> Iterator[JoinedLine]:
        """Each output or error line with its request and judgement."""
        for raw in lines:
            if not raw.strip():
                continue
            line = orjson.loads(raw)
            custom_id = str(line.get("custom_id"))
            row = self._db.execute(
                "SELECT url, body FROM requests WHERE id = ?", (custom_id,)
            ).fetchone()
            judged = self._db.execute(
                "SELECT value FROM judgements WHERE id = ?", (custom_id,)
            ).fetchone()
            response = line.get("response")
            yield JoinedLine(
                custom_id=custom_id,
                request=orjson.loads(row[1]) if row else None,
                url=row[0] if row else None,
                response=response if isinstance(response, dict) else None,
                error=line.get("error") if isinstance(line.get("error"), dict) else None,
                judgement=Judgement.model_validate_json(judged[0]) if judged else None,
            )


def input_lines(store: FileStore, batch_id: str, input_path: Path | None) -> Iterator[bytes]:
    """The batch's request lines: a local file given, else the upload it was created from."""
    if input_path is not None:
        with input_path.open("rb") as file:
            yield from file
        return
    upload = store.linked_input(batch_id)
    if upload is None:
        raise MissingBatchFilesError(
            f"batch {batch_id!r} was not created from an upload in the file store; give its "
            "input file (--input FILE)"
        )
    yield from _lines_of_chunks(store.read_chunks(upload))


def _lines_of_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line + b"\n"
    if pending:
        yield pending


def batch_metadata(store: FileStore, batch_id: str) -> dict[str, str]:
    """The metadata of the batch object written with its files (empty: none written, or none
    readable): where a batch may name its answer schema."""
    try:
        written = orjson.loads(b"".join(store.read(file_id(batch_id, BatchFile.BATCH))))
    except (FileNotFoundError, orjson.JSONDecodeError):
        return {}
    found = written.get("metadata") if isinstance(written, dict) else None
    if not isinstance(found, dict):
        return {}
    return {str(key): value for key, value in found.items() if isinstance(value, str)}


def answered_lines(store: FileStore, batch_id: str) -> Iterator[bytes]:
    """The batch's output lines, then its error lines (a file not written yet: none)."""
    if not store.is_written(batch_id):
        raise MissingBatchFilesError(f"batch {batch_id!r} has no written output in the store")
    for kind in (BatchFile.OUTPUT, BatchFile.ERROR):
        try:
            yield from store.read(file_id(batch_id, kind))
        except FileNotFoundError:
            continue
