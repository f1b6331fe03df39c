"""The ``llm-stream`` command line: one entry point, one subcommand per process role."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from llm_stream import __version__

Handler = Callable[[argparse.Namespace], int]


def add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by every subcommand that talks to Kafka; unset flags fall back to settings."""
    parser.add_argument(
        "--bootstrap-servers",
        help="Kafka bootstrap servers (default: $LLM_STREAM_BOOTSTRAP_SERVERS or 127.0.0.1:9092)",
    )


def _run_broker(args: argparse.Namespace) -> int:
    from llm_stream.cli.embedded_broker import EmbeddedBroker

    broker = EmbeddedBroker(port=args.port, host=args.host, inherit_output=True)
    stopping = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        broker.terminate()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    broker.start()
    print(broker.bootstrap_servers, flush=True)
    code = broker.wait()
    broker.stop()
    return 0 if stopping else code


def _run_tiny_model(args: argparse.Namespace) -> int:
    from llm_stream.cli.tiny_model import build_tiny_model

    print(build_tiny_model(Path(args.directory)))
    return 0


def _pass_through(commands: Any, name: str, module_name: str, help_text: str) -> None:
    """A subcommand whose module parses the rest of the command line itself (``main(argv)``).

    The worker and run-batch use vLLM's own parser, loaded only when they run; their
    ``--help`` lists every vLLM engine flag.
    """
    parser = commands.add_parser(name, help=help_text, add_help=False, prefix_chars="\0")
    parser.add_argument("rest", nargs=argparse.REMAINDER)

    def run(args: argparse.Namespace) -> int:
        module = importlib.import_module(module_name)
        code: int = module.main(args.rest)
        return code

    parser.set_defaults(handler=run)


def _wire(parser: argparse.ArgumentParser, module_name: str) -> None:
    """Wire a subcommand whose module provides ``add_arguments(parser)`` and ``main(args)``."""
    module = importlib.import_module(module_name)
    module.add_arguments(parser)
    parser.set_defaults(handler=module.main)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-stream",
        description="Kafka as an LLM batch-inference bus, served by vLLM.",
    )
    parser.add_argument("--version", action="version", version=f"llm-stream {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    broker = commands.add_parser(
        "broker", help="run the embedded Kafka-protocol broker (Tansu) in the foreground"
    )
    broker.add_argument("--port", type=int, default=9092, help="TCP port (default 9092)")
    broker.add_argument("--host", default="127.0.0.1", help="address to listen on")
    broker.set_defaults(handler=_run_broker)

    tiny = commands.add_parser(
        "tiny-model", help="write a tiny deterministic Llama model for tests and the demo"
    )
    tiny.add_argument("directory", help="where to write the model")
    tiny.set_defaults(handler=_run_tiny_model)

    aggregator = commands.add_parser(
        "aggregator", help="compact results into OpenAI batch output and error files"
    )
    _wire(aggregator, "llm_stream.aggregator.app")

    submit = commands.add_parser(
        "submit", help="validate an OpenAI batch input file and publish it; prints the batch id"
    )
    _wire(submit, "llm_stream.client.submit")

    status = commands.add_parser("status", help="print a batch's OpenAI batch object")
    _wire(status, "llm_stream.client.status")

    bench = commands.add_parser(
        "bench", help="worker throughput against vLLM's offline LLM.generate, in one run"
    )
    _wire(bench, "llm_stream.cli.bench")

    _pass_through(
        commands,
        "worker",
        "llm_stream.worker.app",
        "consume requests from Kafka, run them through vLLM, publish results",
    )
    _pass_through(
        commands,
        "run-batch",
        "llm_stream.cli.run_batch",
        "drop-in for vllm run-batch: the whole pipeline in one command",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
