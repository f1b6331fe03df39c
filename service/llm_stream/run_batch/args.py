"""``llm-stream run-batch``'s arguments: vLLM run-batch's own parser, and the private settings
its pipeline runs under."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from llm_stream.settings import Settings


def build_parser(epilog: str | None = None) -> Any:
    """vLLM's run-batch parser (engine and frontend flags, -i/-o), under our name; ``epilog``
    is the command line's text on exit codes."""
    from vllm.entrypoints.launchers.run_batch import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(
        prog="llm-stream run-batch",
        description="Run an OpenAI batch file through the Kafka pipeline on an embedded broker; "
        "accepts vllm run-batch's flags and writes the same single output file.",
        epilog=epilog,
    )
    make_arg_parser(parser)
    parser.add_argument(
        "--max-in-flight", type=int, help="requests inside the engine at once (2 x max-num-seqs)"
    )
    return parser


class _ArgumentsOnly(Settings):
    """Settings from their defaults and the given values: no environment, no files."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def private_settings(
    bootstrap_servers: str, output_dir: Path, *, max_in_flight: int | None = None
) -> Settings:
    """The pipeline's settings on run-batch's private broker.

    No ``LLM_STREAM_*`` variable is read: a shell pointed at a production cluster (its
    bootstrap servers, credentials, topics, groups, storage) must not leak into a local run.
    """
    return _ArgumentsOnly(
        bootstrap_servers=bootstrap_servers,
        output_dir=output_dir,
        max_in_flight=max_in_flight,
        topic_partitions=1,
        drain_timeout_s=5,
        ops_port=None,  # worker and aggregator share this process: no port to fight over
        # One member per group on a private broker: join fast (the broker waits about half a
        # session timeout for other members before it assigns partitions).
        session_timeout_ms=2_000,
        heartbeat_interval_ms=500,
    )
