"""The ``llm-stream`` command line: one entry point, one subcommand per process role.

Every subcommand's flags are declared here; ``cli.commands`` runs them. The worker and run-batch
are the exception: they take vLLM's own parser, loaded only when they run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llm_stream._version import __version__
from llm_stream.bench import suite
from llm_stream.bench.support import DEFAULT_ENGINE_FLAGS
from llm_stream.cli.errors import run_reported
from llm_stream.cli.exit_codes import CANCEL_EPILOG as CANCEL_EXIT_CODES
from llm_stream.cli.exit_codes import EPILOG as STATUS_EXIT_CODES
from llm_stream.cli.exit_codes import EXIT_INTERRUPTED, FAILURE_EPILOG, RESUME_EPILOG
from llm_stream.engine.model_path import check_model_path, model_flag

Handler = Callable[[argparse.Namespace], int]


def _shared_option(*flags: str, **options: Any) -> argparse.ArgumentParser:
    """A parent parser for an option several subcommands take, declared once."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(*flags, **options)
    return parent


_KAFKA = _shared_option(
    "--bootstrap-servers",
    metavar="HOST:PORT[,...]",
    help="Kafka bootstrap servers (default: LLM_STREAM_BOOTSTRAP_SERVERS)",
)
_OPS = _shared_option(
    "--ops-port", type=int, help="port of /metrics, /healthz and /readyz (default: none)"
)


def _command(name: str, module: str = "commands") -> Handler:
    """``cli.<module>``'s handler ``name``, imported when it runs: the Kafka clients it needs
    are not loaded for the commands that do not (``run-batch`` starts vLLM's engine first)."""

    def handler(args: argparse.Namespace) -> int:
        commands = importlib.import_module(f"llm_stream.cli.{module}")
        result: int = getattr(commands, name)(args)
        return result

    return handler


def _add_broker(subcommands: Any) -> None:
    broker = subcommands.add_parser(
        "broker", help="run the embedded Kafka-protocol broker (Tansu) in the foreground"
    )
    broker.add_argument("--port", type=int, default=9092, help="TCP port (default 9092)")
    broker.add_argument("--host", default="127.0.0.1", help="address to listen on")
    broker.set_defaults(handler=_command("run_broker"))


def _add_tiny_model(subcommands: Any) -> None:
    tiny = subcommands.add_parser(
        "tiny-model", help="write a tiny deterministic Llama model for tests and the demo"
    )
    tiny.add_argument("directory", help="where to write the model")
    tiny.set_defaults(handler=_command("run_tiny_model"))


def _add_aggregator(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "aggregator",
        parents=[_KAFKA, _OPS],
        help="compact results into OpenAI batch output and error files",
    )
    parser.add_argument("--output-dir", type=Path, help="where batch files are written")
    parser.add_argument("--group-id", dest="aggregator_group_id", help="consumer group")
    parser.set_defaults(handler=_command("run_aggregator"))


def _add_notifier(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "notifier",
        parents=[_KAFKA, _OPS],
        help="deliver signed webhooks (batch.completed, ...) when a batch reaches a final status",
        description="Read the batch-status topic in a consumer group and POST OpenAI's batch "
        "event, signed the Standard Webhooks way, to every LLM_STREAM_WEBHOOK_URLS endpoint "
        "with its LLM_STREAM_WEBHOOK_SECRETS secret; retried with exponential back-off, and "
        "published to the webhook-failures topic when every attempt fails.",
    )
    parser.add_argument("--group-id", dest="notifier_group_id", help="consumer group")
    parser.set_defaults(handler=_command("run_notifier"))


def _add_gateway(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "gateway",
        parents=[_KAFKA],
        help="serve the OpenAI Files and Batches API over HTTP in front of the stream",
    )
    parser.add_argument(
        "--host",
        dest="gateway_host",
        help="address to listen on (default: 0.0.0.0 with API keys, 127.0.0.1 without)",
    )
    parser.add_argument("--port", dest="gateway_port", type=int, help="TCP port (default 8000)")
    parser.add_argument(
        "--allow-no-auth",
        dest="gateway_allow_no_auth",
        action="store_const",
        const=True,
        help="serve without API keys on an address beyond loopback (refused otherwise)",
    )
    parser.add_argument(
        "--output-dir", type=Path, help="the aggregators' output directory (the file store)"
    )
    parser.set_defaults(handler=_command("run_gateway"))


def _add_submit(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "submit",
        parents=[_KAFKA],
        help="validate an OpenAI batch input file and publish it; prints the batch id",
    )
    parser.add_argument("file", type=Path, help="OpenAI batch input file (JSONL)")
    parser.add_argument("--batch-id", help="batch id (default: a new batch_<uuid>)")
    parser.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    parser.add_argument(
        "--completion-window",
        default="24h",
        help="digits and a unit s, m, h or d (1h, 24h, 7d), at most "
        "LLM_STREAM_BATCH_MAX_COMPLETION_WINDOW_S; lines not run by then answer batch_expired",
    )
    parser.add_argument(
        "--priority",
        type=int,
        help="the lines' priority, lower is sooner (default 0); kept in the metadata as "
        "llm-stream-priority",
    )
    parser.add_argument(
        "--project",
        help="the project the batch belongs to (default: LLM_STREAM_PROJECT, else the default "
        "project); the Kafka ACLs on the topics authorise the claim",
    )
    parser.set_defaults(handler=_command("run_submit"))


def _add_status(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "status",
        parents=[_KAFKA],
        help="print a batch's OpenAI batch object",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=STATUS_EXIT_CODES,
    )
    parser.add_argument("batch_id")
    parser.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="wait up to SECONDS for a final status (completed, failed, expired, cancelled)",
    )
    parser.set_defaults(handler=_command("run_status"))


def _add_cancel(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "cancel",
        parents=[_KAFKA],
        help="cancel a batch: workers stop running it; prints its batch object",
        description="Publish the batch's cancelling object. Workers answer its requests not yet "
        "run with batch_cancelled error lines and abort those running; the aggregator then "
        "writes it as cancelled, with the results that finished.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=CANCEL_EXIT_CODES,
    )
    parser.add_argument("batch_id")
    parser.set_defaults(handler=_command("run_cancel"))


def _add_resume(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "resume",
        parents=[_KAFKA],
        help="publish again a stalled batch's lines that have no result; prints the counts",
        description="For a batch reported stalled (results lost by the broker): read which "
        "custom_ids have a result on the results topic and publish the other lines of its "
        "input, kept in the file store, again under the same batch id. The aggregator keeps "
        "one result per custom_id, so nothing is doubled in the files.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=RESUME_EPILOG,
    )
    parser.add_argument("batch_id")
    parser.set_defaults(handler=_command("run_resume"))


def _add_export(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "export",
        parents=[_KAFKA],
        help="write a batch's lines as a fine-tuning file, Label Studio tasks or Parquet",
        description="Join the batch's requests, answers and judgements (streamed, from the "
        "file store: a directory or S3) and write them in one format. finetune: OpenAI's chat "
        "fine-tuning JSONL, the reviewer's corrected answer where there is one, accepted and "
        "gold lines only unless --keep says otherwise; every line is checked against OpenAI's "
        "format rules and nothing is written if one breaks them.",
    )
    parser.add_argument("batch_id")
    parser.add_argument("--format", required=True, choices=["finetune", "label-studio", "parquet"])
    parser.add_argument("-o", "--output", required=True, help="the file to write (-: stdout)")
    parser.add_argument(
        "--keep",
        metavar="VERDICTS",
        help="comma-separated verdicts to keep: accepted, gold, rejected, unjudged (default: "
        "accepted,gold for finetune, every line otherwise)",
    )
    parser.add_argument("--input", type=Path, help="the batch's input file, if not uploaded")
    parser.add_argument("--output-dir", type=Path, help="the local file store (default: settings)")
    parser.add_argument(
        "--schema",
        metavar="NAME",
        help="the answers' JSON Schema, LLM_STREAM_SCHEMAS_DIR/NAME.json (a request's own "
        "response_format schema comes first; default: the one the batch's metadata names "
        "under `schema`)",
    )
    parser.add_argument(
        "--valid-only", action="store_true", help="keep only lines whose answer validates"
    )
    parser.set_defaults(handler=_command("run_export", "curation_commands"))


def _add_curate(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "curate", help="review a batch's lines in Label Studio, and pull the verdicts back"
    )
    tools = parser.add_subparsers(dest="tool", required=True, metavar="TOOL")
    studio = tools.add_parser(
        "label-studio",
        parents=[_KAFKA],
        help="make (or reuse) the batch's Label Studio project and import its lines; --pull: "
        "publish its annotations as judgements",
    )
    studio.add_argument("batch_id")
    studio.add_argument("--pull", action="store_true", help="read the annotations back")
    studio.add_argument("--url", help="Label Studio's address (LLM_STREAM_LABEL_STUDIO_URL)")
    studio.add_argument("--api-key", help="its token (LLM_STREAM_LABEL_STUDIO_API_KEY)")
    studio.add_argument("--input", type=Path, help="the batch's input file, if not uploaded")
    studio.add_argument("--output-dir", type=Path, help="the local file store")
    studio.set_defaults(handler=_command("run_curate", "curation_commands"))


def _add_bench(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "bench",
        parents=[_KAFKA],
        help="the service against vLLM itself (offline, AsyncLLM, run-batch), in one run",
        description="Measure, in one run and on the same prompts: vLLM's offline LLM.generate, "
        "AsyncLLM with every request at once, the worker fed from Kafka, llm-stream run-batch "
        "against vllm run-batch, and with no model the aggregator's lines/s, the worker's "
        "overhead per message and peak RSS for a small against a large batch. Without "
        "--bootstrap-servers it starts an embedded broker. See docs/performance.md.",
    )
    parser.add_argument("--model", help="model directory (or name) for vLLM (engine parts)")
    sizes = suite.REAL
    for flag, default, about in (
        ("--prompts", sizes.prompts, "requests per engine side"),
        ("--max-tokens", sizes.max_tokens, "tokens generated per request"),
        ("--repeat", sizes.repeat, f"runs of each side, at least {suite.MIN_REAL_REPEAT}"),
    ):
        parser.add_argument(flag, type=int, metavar="N", help=f"{about} (default {default})")
    parser.add_argument(
        "--only",
        metavar="PARTS",
        help=f"comma-separated parts to run (default all): {','.join(suite.PARTS)}",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="CI check: tiny sizes, one run, short sides allowed; the figures mean nothing",
    )
    parser.add_argument(
        "--max-in-flight", type=int, metavar="N", help="the worker's --max-in-flight (its default)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    parser.add_argument(
        "--fetch-max-wait-ms",
        type=int,
        metavar="MS",
        help="latency part: the worker's and reply listener's fetch.max.wait.ms (default 500; "
        "the embedded broker holds a fetch about half of it whatever arrives)",
    )
    parser.add_argument(
        "--engine-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="vLLM engine flag for every engine side, e.g. --engine-arg=--dtype=bfloat16 "
        f"(repeatable); overrides the defaults {' '.join(DEFAULT_ENGINE_FLAGS)}",
    )
    parser.set_defaults(handler=suite.main)


def _add_pass_through(subcommands: Any, name: str, handler_name: str, help_text: str) -> None:
    """A subcommand whose handler in ``cli.engine_commands`` parses the rest of the command
    line itself: the worker and run-batch use vLLM's own parser, loaded only when they run,
    so their ``--help`` lists every vLLM engine flag."""
    parser = subcommands.add_parser(name, help=help_text, add_help=False, prefix_chars="\0")
    parser.add_argument("rest", nargs=argparse.REMAINDER)

    def run(args: argparse.Namespace) -> int:
        model = model_flag(args.rest)
        if model is not None:
            check_model_path(model)  # in a moment, before vLLM's import and engine start
        from llm_stream.cli import engine_commands

        code: int = getattr(engine_commands, handler_name)(args.rest)
        from llm_stream.ops.process import interrupted

        return EXIT_INTERRUPTED if interrupted() else code

    parser.set_defaults(handler=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-stream",
        description="Kafka as an LLM batch-inference bus, served by vLLM.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=FAILURE_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"llm-stream {__version__}")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_broker(subcommands)
    _add_tiny_model(subcommands)
    _add_aggregator(subcommands)
    _add_notifier(subcommands)
    _add_gateway(subcommands)
    _add_submit(subcommands)
    _add_status(subcommands)
    _add_cancel(subcommands)
    _add_resume(subcommands)
    _add_export(subcommands)
    _add_curate(subcommands)
    _add_bench(subcommands)
    _add_pass_through(
        subcommands,
        "worker",
        "run_worker",
        "consume requests from Kafka, run them through vLLM, publish results",
    )
    _add_pass_through(
        subcommands,
        "run-batch",
        "run_batch",
        "drop-in for vllm run-batch: the whole pipeline in one command",
    )
    _document_failures(subcommands)
    return parser


_DEBUG_HELP = "show tracebacks and debug logs (also: LLM_STREAM_LOG_LEVEL=DEBUG)"


def _document_failures(subcommands: Any) -> None:
    """Every subcommand takes --debug and lists the failure exit codes in its help (the
    worker's and run-batch's own parsers list them in theirs)."""
    for parser in subcommands.choices.values():
        if parser.prefix_chars == "\0":
            continue
        parser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP
        )
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        if parser.epilog is None:
            parser.epilog = FAILURE_EPILOG


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    rest = getattr(args, "rest", None)
    if rest is not None and "--debug" in rest:  # vLLM's parser would refuse our flag
        rest.remove("--debug")
        args.debug = True
    return run_reported(handler, args)


if __name__ == "__main__":
    sys.exit(main())
