"""What ``llm-stream export`` and ``llm-stream curate`` do, as a library: a batch's lines
exported with the judgements the topic holds, sent to Label Studio, its annotations pulled
back onto the topic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import orjson

from llm_stream.curation.export import (
    ExportCount,
    Format,
    batch_schema,
    export_batch,
    schema_problems,
)
from llm_stream.curation.joined import JoinIndex, answered_lines, input_lines
from llm_stream.curation.judgements import publish_judgements, read_judgements
from llm_stream.curation.label_studio import (
    LabelStudio,
    LabelStudioError,
    Project,
    judgement_of,
    project_title,
)
from llm_stream.curation.label_studio_tasks import labelling_config, task_of
from llm_stream.files.store import FileStore
from llm_stream.settings import Settings


async def export_from_stream(
    settings: Settings,
    store: FileStore,
    batch_id: str,
    fmt: Format,
    out: BinaryIO,
    *,
    keep: frozenset[str] | None = None,
    input_path: Path | None = None,
    schema: str | None = None,
    valid_only: bool = False,
) -> ExportCount:
    """``export_batch`` with the judgements read from the judgements topic; ``schema``: a
    schema name of ``settings.schemas_dir``."""
    judgements = read_judgements(settings, batch_id)
    return await export_batch(
        store,
        batch_id,
        judgements,
        fmt,
        out,
        keep=keep,
        input_path=input_path,
        schema=schema,
        schemas_dir=settings.schemas_dir,
        valid_only=valid_only,
    )


def batch_endpoint(store: FileStore, batch_id: str, input_path: Path | None = None) -> str:
    """The endpoint a batch's lines call (every line calls the same one)."""
    for raw in input_lines(store, batch_id, input_path):
        if raw.strip():
            return str(orjson.loads(raw).get("url"))
    return ""


def send_to_label_studio(
    studio: LabelStudio,
    store: FileStore,
    batch_id: str,
    input_path: Path | None = None,
    schemas_dir: Path | None = None,
) -> tuple[Project, int]:
    """The batch's project (made, or found again) and the tasks imported now: every answered
    line, once, with its schema check; a project that already holds tasks gets none again."""
    endpoint = batch_endpoint(store, batch_id, input_path)
    labelling_config(endpoint)  # embeddings are refused before anything is made
    named = batch_schema(store, batch_id, None, schemas_dir)  # and a schema named in vain
    project, _made = studio.ensure_project(batch_id, endpoint)
    if project.task_count > 0:
        return project, 0
    with JoinIndex() as index:
        index.add_requests(input_lines(store, batch_id, input_path))
        tasks: Iterator[dict[str, object]] = (
            task_of(line, batch_id, schema_problems(line, named))
            for line in index.join(answered_lines(store, batch_id))
            if line.answer is not None
        )
        imported = studio.import_tasks(project.id, tasks)
    return Project(project.id, project.title, imported), imported


async def pull_from_label_studio(settings: Settings, studio: LabelStudio, batch_id: str) -> int:
    """Publish each annotated task's judgement; how many."""
    project = studio.find_project(project_title(batch_id))
    if project is None:
        raise LabelStudioError(
            f"Label Studio has no project for batch {batch_id!r}: send it first "
            "(`llm-stream curate label-studio BATCH`)"
        )
    judgements = (judgement_of(task, batch_id) for task in studio.tasks(project.id))
    return await publish_judgements(settings, (j for j in judgements if j is not None))
