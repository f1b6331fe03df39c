"""The worker's command line: vLLM's own engine and frontend flags, unchanged, plus ours.

Building on vLLM's parser means every engine flag (``--model``, ``--max-model-len``,
``--tensor-parallel-size``, ...) works exactly as in ``vllm serve`` and stays current with vLLM.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from llm_stream.settings import Settings


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("llm-stream")
    group.add_argument("--bootstrap-servers", help="Kafka bootstrap servers")
    group.add_argument("--requests-topic", help="topic to consume request lines from")
    group.add_argument("--results-topic", help="topic to publish result lines to")
    group.add_argument("--dead-letter-topic", help="topic for unattributable messages")
    group.add_argument("--group-id", dest="worker_group_id", help="consumer group of workers")
    group.add_argument(
        "--max-in-flight",
        type=int,
        help="requests kept inside the engine at once (default: 2 x --max-num-seqs)",
    )
    group.add_argument(
        "--drain-timeout", dest="drain_timeout_s", type=float, help="seconds to finish on SIGTERM"
    )
    group.add_argument(
        "--ops-port", type=int, help="port of /metrics, /healthz and /readyz (default: none)"
    )
    group.add_argument(
        "--ops-host", help="address the ops endpoint binds (default: 0.0.0.0, for containers)"
    )
    group.add_argument(
        "--media-url-fetching",
        action="store_true",
        default=None,
        help="fetch http(s) media URLs in requests from any host (default: only the hosts in "
        "--allowed-media-domains; data: URLs always work)",
    )


SERVICE_FIELDS = (
    "bootstrap_servers",
    "requests_topic",
    "results_topic",
    "dead_letter_topic",
    "worker_group_id",
    "max_in_flight",
    "drain_timeout_s",
    "ops_port",
    "ops_host",
    "media_url_fetching",
)


def build_worker_parser(prog: str = "llm-stream worker", epilog: str | None = None) -> Any:
    """vLLM's ``FlexibleArgumentParser`` with engine, frontend and service flags; ``epilog``
    is the command line's text on exit codes."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.launchers.cli_args import BaseFrontendArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(
        prog=prog,
        description="Consume request lines from Kafka, run them through one vLLM engine with "
        "continuous batching, publish one result line per request keyed by batch_id.",
        epilog=epilog,
    )
    add_service_arguments(parser)
    BaseFrontendArgs.add_cli_args(parser)
    AsyncEngineArgs.add_cli_args(parser)
    return parser


def parse_worker_args(
    argv: Sequence[str], epilog: str | None = None
) -> tuple[Settings, argparse.Namespace]:
    args = build_worker_parser(epilog=epilog).parse_args(list(argv))
    settings = Settings().with_overrides(**{name: getattr(args, name) for name in SERVICE_FIELDS})
    return settings, args
