"""``llm-stream export`` and ``llm-stream curate``: a batch's lines out of the store, with the
judgements the topic holds, and the Label Studio round trip."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from llm_stream.cli.errors import CommandError, NoSuchBatchError, OutputNotWritableError
from llm_stream.cli.exit_codes import EXIT_USAGE
from llm_stream.contracts import is_safe_batch_id
from llm_stream.curation.curate import (
    export_from_stream,
    pull_from_label_studio,
    send_to_label_studio,
)
from llm_stream.curation.export import VERDICTS, InvalidExampleError
from llm_stream.curation.joined import MissingBatchFilesError
from llm_stream.curation.label_studio import LabelStudio, LabelStudioError
from llm_stream.curation.label_studio_tasks import NotReviewableError
from llm_stream.curation.schemas import SchemaNotFoundError
from llm_stream.files.opening import open_store
from llm_stream.settings import Settings


class CurationError(CommandError):
    """Label Studio refused, or a line would break the fine-tuning format."""

    code = EXIT_USAGE


def _settings(args: argparse.Namespace) -> Settings:
    if not is_safe_batch_id(args.batch_id):
        raise CurationError(f"unsafe batch id {args.batch_id!r}")
    return Settings().with_overrides(
        bootstrap_servers=args.bootstrap_servers, output_dir=getattr(args, "output_dir", None)
    )


def _keep(value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    kept = frozenset(part.strip() for part in value.split(",") if part.strip())
    unknown = kept - VERDICTS
    if unknown:
        raise CurationError(f"--keep takes {', '.join(sorted(VERDICTS))}; not {sorted(unknown)}")
    return kept


@contextlib.contextmanager
def _target(path: str) -> Iterator[BinaryIO]:
    """The output file, written whole or not at all; ``-``: standard output."""
    if path == "-":
        yield sys.stdout.buffer
        return
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    try:
        out = partial.open("wb")
    except OSError as error:
        raise OutputNotWritableError(f"cannot write {path}: {error}") from error
    try:
        with out:
            yield out
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def run_export(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = open_store(settings)
    try:
        with _target(args.output) as out:
            count = asyncio.run(
                export_from_stream(
                    settings,
                    store,
                    args.batch_id,
                    args.format,
                    out,
                    keep=_keep(args.keep),
                    input_path=args.input,
                    schema=args.schema,
                    valid_only=args.valid_only,
                )
            )
    except MissingBatchFilesError as error:
        raise NoSuchBatchError(str(error)) from error
    except (InvalidExampleError, SchemaNotFoundError) as error:
        raise CurationError(f"nothing written: {error}") from error
    verdicts = ", ".join(f"{k} {v}" for k, v in sorted(count.verdicts.items()))
    print(
        f"{count.written} lines written, {count.skipped} left out by verdict or with no "
        f"answer, {count.invalid} breaking their schema ({verdicts})",
        file=sys.stderr,
    )
    return 0


def run_curate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    key = args.api_key or (
        settings.label_studio_api_key.get_secret_value() if settings.label_studio_api_key else None
    )
    if not key:
        raise CurationError(
            "a Label Studio token is needed: --api-key or LLM_STREAM_LABEL_STUDIO_API_KEY"
        )
    url = args.url or settings.label_studio_url
    try:
        with LabelStudio(url, key) as studio:
            if args.pull:
                pulled = asyncio.run(pull_from_label_studio(settings, studio, args.batch_id))
                print(f"{pulled} judgements published to {settings.judgements_topic}")
                return 0
            project, imported = send_to_label_studio(
                studio, open_store(settings), args.batch_id, args.input, settings.schemas_dir
            )
    except MissingBatchFilesError as error:
        raise NoSuchBatchError(str(error)) from error
    except (LabelStudioError, NotReviewableError, SchemaNotFoundError) as error:
        raise CurationError(str(error)) from error
    print(f"{url.rstrip('/')}/projects/{project.id} ({imported} tasks imported now)")
    return 0
