"""The worker's command line: our flags beside vLLM's, each landing on the ``Settings`` field
of its name, unset unless given (so the environment and the defaults still apply)."""

from __future__ import annotations

import argparse

import pytest

from llm_stream.settings import Settings
from llm_stream.worker.args import SERVICE_FIELDS, add_service_arguments, parse_worker_args


def _service_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_service_arguments(parser)
    return parser


def test_every_service_flag_is_a_settings_field_and_none_is_left_out() -> None:
    """A flag whose destination is not a field would be dropped, or break, when applied."""
    assert set(SERVICE_FIELDS) <= set(Settings.model_fields)
    assert set(vars(_service_parser().parse_args([]))) == set(SERVICE_FIELDS)


def test_a_flag_left_unset_overrides_nothing() -> None:
    """``with_overrides`` ignores None: the environment's and the defaults' values stay."""
    args = _service_parser().parse_args([])
    assert all(getattr(args, name) is None for name in SERVICE_FIELDS)
    assert Settings().with_overrides(**vars(args)) == Settings()


def test_the_flags_map_to_their_fields_with_their_types() -> None:
    """Flags named for operators (``--group-id``, ``--drain-timeout``) set the fields' names."""
    args = _service_parser().parse_args(
        [
            "--bootstrap-servers=k:9092",
            "--requests-topic=rq",
            "--results-topic=rs",
            "--dead-letter-topic=dl",
            "--group-id=g",
            "--max-in-flight=7",
            "--drain-timeout=2.5",
            "--ops-port=9100",
            "--ops-host=127.0.0.1",
            "--media-url-fetching",
        ]
    )
    assert vars(args) == {
        "bootstrap_servers": "k:9092",
        "requests_topic": "rq",
        "results_topic": "rs",
        "dead_letter_topic": "dl",
        "worker_group_id": "g",
        "max_in_flight": 7,
        "drain_timeout_s": 2.5,
        "ops_port": 9100,
        "ops_host": "127.0.0.1",
        "media_url_fetching": True,
    }


def test_the_worker_command_line_gives_settings_and_vllms_engine_arguments(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """vLLM's own parser takes the engine flags; ours become settings; help ends with the
    epilog the command passes (its exit codes)."""
    settings, args = parse_worker_args(
        ["--model", "m", "--bootstrap-servers", "k:9092", "--max-in-flight", "7"]
    )
    assert args.model == "m"
    assert (settings.bootstrap_servers, settings.max_in_flight) == ("k:9092", 7)
    assert settings.requests_topic == Settings().requests_topic
    with pytest.raises(SystemExit) as exited:
        parse_worker_args(["--help"], epilog="EXIT CODES OF THE WORKER")
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "--bootstrap-servers" in out
    assert out.rstrip().endswith("EXIT CODES OF THE WORKER")
