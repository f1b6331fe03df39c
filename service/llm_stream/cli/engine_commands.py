"""The commands that start vLLM's engine: ``worker`` and ``run-batch``.

Each takes vLLM's own parser (every engine flag, as ``vllm serve`` has it), imported only when
the command runs, with the command line's exit codes in its help.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from llm_stream.cli.exit_codes import FAILURE_EPILOG
from llm_stream.cli.file_checks import check_input_file, check_output_file


def run_worker(argv: Sequence[str]) -> int:
    from llm_stream.ops.process import start_process
    from llm_stream.worker.app import serve_worker
    from llm_stream.worker.args import parse_worker_args

    settings, engine_args = parse_worker_args(argv, epilog=FAILURE_EPILOG)
    start_process(settings, "llm-stream-worker")
    return asyncio.run(serve_worker(settings, engine_args))


def run_batch(argv: Sequence[str]) -> int:
    from llm_stream.run_batch.args import build_parser
    from llm_stream.run_batch.main import run
    from llm_stream.run_batch.remote_files import is_url

    args = build_parser(epilog=FAILURE_EPILOG).parse_args(list(argv))
    if not is_url(args.input_file):
        check_input_file(Path(args.input_file), allow_empty=True)  # vLLM's run-batch takes one
    if not is_url(args.output_file):
        check_output_file(Path(args.output_file))
    return run(args)
