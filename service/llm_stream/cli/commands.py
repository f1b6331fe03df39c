"""What each ``llm-stream`` subcommand does with its parsed flags, and everything it prints.

``cli.main`` builds the parsers; the libraries these handlers call (``client``, the aggregator,
the embedded broker) neither parse arguments nor print.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import signal
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
import pydantic
from tqdm import tqdm

from llm_stream.batch.input_file import read_requests, validate_batch_file
from llm_stream.batch.request_line import batch_id_problem
from llm_stream.cli.errors import InputFileError, MissingExtraError, NoSuchBatchError
from llm_stream.cli.exit_codes import (
    EXIT_CANNOT_RESUME,
    EXIT_INTERRUPTED,
    EXIT_NO_BATCH,
    EXIT_USAGE,
    cancel_exit_code,
    exit_code,
)
from llm_stream.cli.file_checks import check_input_file, check_output_dir, check_port_free
from llm_stream.client.batch_client import BatchClient
from llm_stream.client.manifests import build_manifest, new_batch_id
from llm_stream.client.resume import Resumed, ResumeRefusedError, resume_batch
from llm_stream.contracts import PRIORITY_HEADER, BatchObject, is_safe_batch_id
from llm_stream.files.opening import open_store
from llm_stream.files.records import new_upload_id
from llm_stream.files.store import CHUNK_BYTES
from llm_stream.kafka.topics import ensure_topics
from llm_stream.ops import telemetry
from llm_stream.settings import Settings

#: OpenAI's limit on a batch's metadata pairs.
MAX_METADATA_PAIRS = 16


def run_broker(args: argparse.Namespace) -> int:
    from llm_stream.broker.embedded import EmbeddedBroker

    check_port_free(args.host, args.port, "--port")
    broker = EmbeddedBroker(port=args.port, host=args.host, inherit_output=True)
    stopped_by: int | None = None

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopped_by
        stopped_by = signum
        broker.terminate()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        broker.start()
    except RuntimeError:
        if stopped_by is None:
            raise
        broker.stop()  # stopped while starting: the stop, not a failure to start
    else:
        print(broker.bootstrap_servers, flush=True)
        code = broker.wait()
        broker.stop()
        if stopped_by is None:
            return code
    return EXIT_INTERRUPTED if stopped_by == signal.SIGINT else 0


def run_tiny_model(args: argparse.Namespace) -> int:
    try:
        from llm_stream.engine.tiny_model import build_tiny_model
    except ModuleNotFoundError as missing:  # the extra's packages, not a part of ours
        raise MissingExtraError(
            f"tiny-model needs {missing.name}: pip install 'llm-stream[tiny-model]'"
        ) from missing

    print(build_tiny_model(Path(args.directory)))
    return 0


def _run_role(serving: Coroutine[Any, Any, int]) -> int:
    """A role's exit code; 130 when Ctrl-C stopped it (after its clean stop)."""
    from llm_stream.ops.process import interrupted

    code = asyncio.run(serving)
    return EXIT_INTERRUPTED if interrupted() else code


def _check_file_store(settings: Settings) -> None:
    """The local file store must be writable before a role starts (object storage is checked
    by its first write)."""
    if settings.storage_url is None:
        check_output_dir(settings.output_dir)


def run_aggregator(args: argparse.Namespace) -> int:
    from llm_stream.aggregator.app import serve_aggregator
    from llm_stream.ops.process import start_process

    settings = Settings().with_overrides(
        bootstrap_servers=args.bootstrap_servers,
        output_dir=args.output_dir,
        aggregator_group_id=args.aggregator_group_id,
        ops_port=args.ops_port,
    )
    start_process(settings, "llm-stream-aggregator")
    _check_file_store(settings)
    return _run_role(serve_aggregator(settings))


def run_notifier(args: argparse.Namespace) -> int:
    from llm_stream.notifier.app import serve_notifier
    from llm_stream.notifier.endpoints import WebhookConfigError, configured_endpoints
    from llm_stream.ops.process import start_process

    settings = Settings().with_overrides(
        bootstrap_servers=args.bootstrap_servers,
        notifier_group_id=args.notifier_group_id,
        ops_port=args.ops_port,
    )
    try:
        configured_endpoints(settings)
    except WebhookConfigError as error:
        _error(str(error))
        return EXIT_USAGE
    start_process(settings, "llm-stream-notifier")
    return _run_role(serve_notifier(settings))


def run_gateway(args: argparse.Namespace) -> int:
    from llm_stream.gateway.app import bind_host, serve_gateway
    from llm_stream.ops.process import start_process

    settings = Settings().with_overrides(
        bootstrap_servers=args.bootstrap_servers,
        output_dir=args.output_dir,
        gateway_host=args.gateway_host,
        gateway_port=args.gateway_port,
        gateway_allow_no_auth=args.gateway_allow_no_auth,
    )
    start_process(settings, "llm-stream-gateway")
    _check_file_store(settings)
    check_port_free(bind_host(settings), settings.gateway_port, "--port")
    return asyncio.run(serve_gateway(settings))


def parse_metadata(pairs: list[str]) -> dict[str, str]:
    """``--metadata KEY=VALUE`` flags as a dict; ValueError names the bad pair."""
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"metadata must be key=value, got {pair!r}")
        metadata[key] = value
    if len(metadata) > MAX_METADATA_PAIRS:
        raise ValueError(f"at most {MAX_METADATA_PAIRS} metadata pairs")
    return metadata


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def run_submit(args: argparse.Namespace) -> int:
    """Validate the whole file, then publish it; nothing is published unless every line is
    valid (its record's size under ``max_message_bytes`` included)."""
    batch_id = args.batch_id or new_batch_id()
    unsafe = batch_id_problem(batch_id)
    if unsafe is not None:
        _error(unsafe.message)
        return 2
    try:
        metadata = parse_metadata(args.metadata)
        if (priority := getattr(args, "priority", None)) is not None:
            metadata[PRIORITY_HEADER] = str(priority)
    except ValueError as error:
        _error(str(error))
        return 2
    check_input_file(args.file)
    settings = Settings().with_overrides(
        bootstrap_servers=args.bootstrap_servers, project=args.project
    )
    check = validate_batch_file(
        args.file,
        batch_id=batch_id,
        max_bytes=settings.max_message_bytes,
        max_line_bytes=settings.batch_max_line_bytes,
        allow_mixed_models=settings.batch_allow_mixed_models,
    )
    if not check.ok or check.endpoint is None:
        raise InputFileError(
            f"input file {args.file} is not valid batch JSONL; fix these lines and submit "
            f"again:\n{check.report()}"
        )
    try:
        build_manifest(
            batch_id,
            endpoint=check.endpoint,
            request_count=check.line_count,
            metadata=metadata,
            completion_window=args.completion_window,
            max_completion_window_s=settings.batch_max_completion_window_s,
            project=settings.project,
        )
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
            for e in error.errors(include_url=False, include_input=False)
        )
        _error(f"invalid batch settings: {problems}")
        return 2
    telemetry.configure_tracing(settings, "llm-stream-submit")
    lines = read_requests(args.file, settings.batch_max_line_bytes)

    async def submit() -> None:
        await ensure_topics(settings)  # the progress bar starts once Kafka answered
        if (
            settings.submit_keep_input
        ):  # once Kafka answered: a submit that cannot start keeps nothing
            await asyncio.to_thread(_keep_input, settings, args.file, batch_id)
        with tqdm(total=check.line_count, unit="req", desc="submit", file=sys.stderr) as progress:
            async with BatchClient.from_settings(settings) as client:
                await client.submit(
                    lines,
                    batch_id=batch_id,
                    endpoint=str(check.endpoint),
                    metadata=metadata,
                    completion_window=args.completion_window,
                    request_count=check.line_count,
                    on_published=progress.update,
                    models=list(check.models),
                    input_tokens=check.input_tokens,
                    keep_input=False,  # the file itself is kept, above
                )

    asyncio.run(submit())
    print(batch_id)
    return 0


def _keep_input(settings: Settings, path: Path, batch_id: str) -> None:
    """Store the input file where ``llm-stream resume`` reads it (best effort: a store that
    refuses only means no resume)."""
    try:
        store = open_store(settings)
        created_at = int(time.time())
        keep_s = settings.files_input_expires_after_s
        with path.open("rb") as file:
            upload = store.write_upload(
                new_upload_id(),
                iter(functools.partial(file.read, CHUNK_BYTES), b""),
                filename=path.name,
                created_at=created_at,
                project=settings.project,
                expires_at=created_at + keep_s if keep_s else None,
            )
        store.link_input(batch_id, upload.id)
    except Exception as error:
        _error(f"the input file was not kept in the file store ({error!r}): resume is refused")


def run_resume(args: argparse.Namespace) -> int:
    """Publish again the batch's lines that have no result (``client.resume``)."""
    if not is_safe_batch_id(args.batch_id):
        _error(f"unsafe batch id {args.batch_id!r}")
        return EXIT_USAGE
    settings = Settings().with_overrides(bootstrap_servers=args.bootstrap_servers)
    try:
        resumed = asyncio.run(_resume(settings, args.batch_id))
    except ResumeRefusedError as error:
        _error(str(error))
        return EXIT_CANNOT_RESUME
    print(orjson.dumps(dataclasses.asdict(resumed)).decode())
    return 0


async def _resume(settings: Settings, batch_id: str) -> Resumed:
    async with BatchClient.from_settings(settings) as client:
        return await resume_batch(settings, client, open_store(settings), batch_id)


def run_status(args: argparse.Namespace) -> int:
    if not is_safe_batch_id(args.batch_id):
        _error(f"unsafe batch id {args.batch_id!r}")
        return EXIT_USAGE
    settings = Settings().with_overrides(bootstrap_servers=args.bootstrap_servers)
    try:
        batch = asyncio.run(_read_status(settings, args.batch_id, args.wait))
    except pydantic.ValidationError as error:
        _error(f"unreadable batch object: {error}")
        return EXIT_NO_BATCH
    if batch is None:
        raise _no_such_batch(settings, args.batch_id)
    _print_batch(batch)
    return exit_code(batch, waited=args.wait is not None)


def _no_such_batch(settings: Settings, batch_id: str) -> NoSuchBatchError:
    return NoSuchBatchError(
        f"no batch {batch_id!r} on Kafka at {settings.bootstrap_servers} (topic "
        f"{settings.batch_status_topic}). Check the id (`llm-stream submit` prints it) and that "
        "submit, the workers and the aggregator use the same broker and topics."
    )


def _print_batch(batch: BatchObject) -> None:
    sys.stdout.write(
        orjson.dumps(batch.model_dump(mode="json"), option=orjson.OPT_INDENT_2).decode()
    )
    sys.stdout.write("\n")


async def _read_status(settings: Settings, batch_id: str, wait: float | None) -> BatchObject | None:
    async with BatchClient.from_settings(settings) as client:
        if wait is None:
            return await client.retrieve(batch_id)
        return await client.wait(batch_id, wait)


def run_cancel(args: argparse.Namespace) -> int:
    if not is_safe_batch_id(args.batch_id):
        _error(f"unsafe batch id {args.batch_id!r}")
        return EXIT_USAGE
    settings = Settings().with_overrides(bootstrap_servers=args.bootstrap_servers)
    try:
        batch = asyncio.run(_cancel(settings, args.batch_id))
    except pydantic.ValidationError as error:
        _error(f"unreadable batch object: {error}")
        return EXIT_NO_BATCH
    if batch is None:
        raise _no_such_batch(settings, args.batch_id)
    _print_batch(batch)
    code = cancel_exit_code(batch)
    if code:
        _error(f"batch {args.batch_id!r} is {batch.status}: too late to cancel")
    return code


async def _cancel(settings: Settings, batch_id: str) -> BatchObject | None:
    async with BatchClient.from_settings(settings) as client:
        return await client.cancel(batch_id)
