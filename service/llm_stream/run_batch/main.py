"""``llm-stream run-batch``: a drop-in for ``vllm run-batch`` that runs the whole pipeline.

Same flags (vLLM's own parser), same single output file in input order, errors included. One
command starts the embedded broker, the engine, a worker and an aggregator in this process,
submits the file, waits for the batch files and merges them into ``-o``, in vLLM run-batch's
line shape (``run_batch.vllm_lines``); ``-i`` and ``-o`` may be http(s) URLs. Every line vLLM's
run-batch answers is answered alike (repeated ``custom_id``s too, with the status code it
gives); beyond it, lines it cannot parse are error lines instead of aborting the run, and
``/v1/completions`` and ``/v1/responses`` lines are served.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import uuid
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson

from llm_stream.aggregator.spool import OutputIndex
from llm_stream.batch import request_line
from llm_stream.batch.error_bodies import MODEL_DOES_NOT_SERVE, error_response
from llm_stream.batch.input_file import iter_lines
from llm_stream.batch.request_line import Problem, Stage
from llm_stream.batch.result_lines import local_output_line
from llm_stream.broker.embedded import EmbeddedBroker
from llm_stream.contracts import SUPPORTED_ENDPOINTS, ResponseData
from llm_stream.engine.model_path import served_model_names
from llm_stream.engine.starting import StartingEngine
from llm_stream.files.atomic import write_atomically
from llm_stream.files.store import ERROR_FILE, OUTPUT_FILE, BatchFile, LocalFileStore, file_id
from llm_stream.run_batch.args import private_settings
from llm_stream.run_batch.remote_files import download, is_url, upload
from llm_stream.run_batch.vllm_lines import to_vllm_line, unsupported_url_message
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)


def classify_lines(
    path: Path,
    *,
    batch_id: str | None = None,
    max_bytes: int = request_line.DEFAULT_MAX_RECORD_BYTES,
    max_line_bytes: int = request_line.DEFAULT_MAX_LINE_BYTES,
) -> Iterator[tuple[int, dict[str, Any] | None, bytes | None]]:
    """For each input line: ``(number, request_line, None)`` when it can be submitted, else
    ``(number, None, error_output_line)``.

    A line ``request_line``'s rules refuse is answered here, exactly as the worker or the engine
    would answer it; unknown fields are dropped, as vLLM's run-batch ignores them.
    """
    for number, raw in iter_lines(path, max_line_bytes):
        document = raw if isinstance(raw, Problem) else request_line.decode(raw)
        if isinstance(document, Problem):  # not read (too long) or not a JSON object
            yield number, None, _unattributable(number, [document])
            continue
        line: dict[str, Any] = {k: document[k] for k in request_line.LINE_FIELDS if k in document}
        line = with_served_url(line)
        problems = request_line.check_line(line, max_bytes=max_bytes, batch_id=batch_id)
        if problems and problems[0].stage is Stage.ATTRIBUTION:
            yield number, None, _unattributable(number, problems)
            continue
        if problems:
            yield (
                number,
                None,
                local_error_line(line["custom_id"], _as_vllm_run_batch(line, problems)),
            )
        else:
            yield number, line, None


def with_served_url(line: dict[str, Any]) -> dict[str, Any]:
    """vLLM's run-batch takes any URL ending in ``/score`` or ``/rerank`` for those APIs: such
    a line goes to the worker under the path vLLM's server takes for it."""
    url = line.get("url")
    if not isinstance(url, str) or url in SUPPORTED_ENDPOINTS:
        return line
    for path in ("/score", "/rerank"):
        if url.endswith(path):
            return {**line, "url": path}
    return line


def pipeline_id(number: int) -> str:
    """The ``custom_id`` a line travels under: its line number. vLLM's run-batch answers every
    line, ids repeated or not, and a batch holds one answer per id; the merge puts each line's
    own ``custom_id`` back."""
    return f"line-{number}"


def _as_vllm_run_batch(line: dict[str, Any], problems: list[Problem]) -> ResponseData:
    """The rules' answer, except where vLLM's run-batch answers otherwise: a URL it does not
    serve is a 400 there (its server would say 404)."""
    response = request_line.answer(problems)
    if response.status_code == HTTPStatus.NOT_FOUND and line.get("url") not in SUPPORTED_ENDPOINTS:
        return _bad_request(unsupported_url_message(line.get("url")))
    return response


def as_input_line(found: bytes, request: dict[str, Any]) -> bytes:
    """The pipeline's answer to ``request`` under its own ``custom_id``; a model that does not
    serve its endpoint answered as vLLM's run-batch answers it (400, its words)."""
    document = orjson.loads(found)
    document["custom_id"] = request["custom_id"]
    response = document.get("response") or {}
    message = str((((response.get("body") or {}).get("error")) or {}).get("message", ""))
    if response.get("status_code") == HTTPStatus.NOT_FOUND and message.startswith(
        MODEL_DOES_NOT_SERVE
    ):
        unsupported = _bad_request(f"Model does not support endpoint: {request['url']}")
        document["response"] = {**response, **unsupported.model_dump(exclude={"request_id"})}
    return bytes(orjson.dumps(document))


def _bad_request(message: str) -> ResponseData:
    return error_response(HTTPStatus.BAD_REQUEST, message)


def _unattributable(number: int, problems: list[Problem]) -> bytes:
    """No ``custom_id`` to file it under: the message names the line instead. The earliest
    stage decides, as for any line (an over-long line, never parsed, is answered 413)."""
    first = min(problem.stage for problem in problems)
    decisive = [problem for problem in problems if problem.stage is first]
    messages = "; ".join(problem.message for problem in decisive)
    status = HTTPStatus(decisive[0].response.status_code)  # 400; 413: a line too long to read
    return local_error_line(None, error_response(status, f"line {number}: {messages}"))


def local_error_line(custom_id: str | None, response: ResponseData) -> bytes:
    """An output line for ``response``, as the aggregator writes a worker's answer."""
    return local_output_line(custom_id, response)


def merge_in_input_order(input_path: Path, batch_dir: Path, output_path: Path) -> int:
    """Write one output line per input line, in input order; return the line count.

    ``batch_dir``: the batch's directory in a ``LocalFileStore``; its files are read by id.
    """
    store, batch_id = LocalFileStore(batch_dir.parent), batch_dir.name
    index = OutputIndex(batch_dir / "index.db")
    written = 0

    def ordered() -> Iterator[bytes]:
        nonlocal written
        for number, request, answered in classify_lines(input_path):
            if request is not None and (found := index.get(pipeline_id(number))) is not None:
                answered = as_input_line(found, request)
            if answered is None:
                raise RuntimeError(f"no result for line {number}: {request!r}")
            written += 1
            yield to_vllm_line(answered)

    try:
        for kind in (BatchFile.OUTPUT, BatchFile.ERROR):
            lines = store.read(file_id(batch_id, kind))
            index.add((orjson.loads(line)["custom_id"], line) for line in lines)
        write_atomically(output_path, ordered())
        return written
    finally:
        index.delete()


def _scan(input_path: Path) -> tuple[int, str]:
    """Submittable line count and the first such line's endpoint, in one read of the file."""
    count, endpoint = 0, ""
    for _, request, _ in classify_lines(input_path):
        if request is not None:
            if count == 0:
                endpoint = str(request.get("url", ""))
            count += 1
    return count, endpoint


async def _run_pipeline(args: argparse.Namespace, settings: Settings, batch_id: str) -> None:
    """vLLM's engine starts first; run-batch's own pipeline (its Kafka clients, the worker and
    the aggregator: half a second of imports) loads while the engine does."""
    input_path = Path(args.input_file)
    count, endpoint = _scan(input_path)
    if count == 0:
        return
    engine = await _start_engine(args)
    from llm_stream.run_batch.pipeline import serve_batch

    lines = (
        {**request, "custom_id": pipeline_id(number)}
        for number, request, _ in classify_lines(input_path)
        if request is not None
    )
    await serve_batch(engine, settings, batch_id, lines, count=count, endpoint=endpoint)


async def _start_engine(args: argparse.Namespace) -> StartingEngine:
    """vLLM's engine, starting: returned once its configuration (how many requests it runs
    at once, which sizes the worker) is known, tens of seconds before it can serve."""
    from llm_stream.engine.vllm_engine import VllmEngine

    configured: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    starting = asyncio.create_task(VllmEngine.start(args, configured=configured.set_result))
    first: set[asyncio.Future[Any]] = {configured, starting}
    await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
    if not configured.done():
        await starting  # it failed before configuring: its error
    return StartingEngine(starting, configured.result(), served_model_names(args))


def run(args: argparse.Namespace) -> int:
    """Run the batch ``args`` (vLLM run-batch's, parsed and checked by the command line) names."""
    remote_input, remote_output = is_url(args.input_file), is_url(args.output_file)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    batch_id = f"run_batch_{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory(dir=args.output_tmp_dir) as workdir:
        work = Path(workdir)
        input_path = Path(args.input_file)
        if remote_input:
            input_path = download(args.input_file, work / "input.jsonl")
            args.input_file = str(input_path)
        output_path = work / "output.jsonl" if remote_output else Path(args.output_file)
        broker = EmbeddedBroker().start()
        try:
            settings = private_settings(
                broker.bootstrap_servers, work / "batches", max_in_flight=args.max_in_flight
            )
            asyncio.run(_run_pipeline(args, settings, batch_id))
        finally:
            broker.stop(discard=True)  # the files are written: its records are not needed
        batch_dir = settings.output_dir / batch_id
        if not batch_dir.exists():  # nothing was submittable: every line is a local error
            batch_dir.mkdir(parents=True)
            (batch_dir / OUTPUT_FILE).touch()
            (batch_dir / ERROR_FILE).touch()
        written = merge_in_input_order(input_path, batch_dir, output_path)
        if remote_output:
            upload(output_path, args.output_file)
    print(f"wrote {written} lines to {args.output_file}", file=sys.stderr)
    return 0
