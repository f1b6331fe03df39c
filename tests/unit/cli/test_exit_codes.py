"""What every command exits with: one code per terminal status and per failure kind, each
named in the help."""

from __future__ import annotations

import re

import pytest

from llm_stream.batch.status import TERMINAL_STATUSES
from llm_stream.cli import exit_codes
from llm_stream.cli.exit_codes import (
    EXIT_CODES,
    EXIT_NO_BATCH,
    EXIT_NOT_TERMINAL,
    EXIT_USAGE,
    exit_code,
)
from llm_stream.cli.main import build_parser
from tests.unit.cli.batches import batch_in as _batch

FAILURES = (
    exit_codes.EXIT_USAGE,
    exit_codes.EXIT_UNEXPECTED,
    exit_codes.EXIT_BROKER_UNREACHABLE,
    exit_codes.EXIT_BROKER_REFUSED,
    exit_codes.EXIT_TOPIC_MISSING,
    exit_codes.EXIT_MODEL_PATH,
    exit_codes.EXIT_ENGINE_START,
    exit_codes.EXIT_INPUT_FILE,
    exit_codes.EXIT_OUTPUT_NOT_WRITABLE,
    exit_codes.EXIT_MODEL_NOT_SERVED,
    exit_codes.EXIT_INTERRUPTED,
)


def _listed(epilog: str) -> list[int]:
    """The codes an epilog lists, one per line, in its order."""
    return [int(code) for code in re.findall(r"^  (\d+)  ", epilog, flags=re.MULTILINE)]


def test_every_failure_kind_has_its_own_exit_code() -> None:
    codes = [
        exit_codes.EXIT_NO_BATCH,
        exit_codes.EXIT_NOT_TERMINAL,
        *exit_codes.EXIT_CODES.values(),
        exit_codes.EXIT_TOO_LATE_TO_CANCEL,
        *FAILURES,  # EXIT_USAGE among them
    ]
    assert len(set(codes)) == len(codes)


def test_every_subcommand_documents_the_failure_exit_codes() -> None:
    parser = build_parser()
    assert exit_codes.FAILURE_EPILOG in parser.format_help()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    assert isinstance(subcommands, dict)
    for name, subparser in subcommands.items():
        if name in ("worker", "run-batch"):  # vLLM's parser, with the epilog of its own
            continue
        assert exit_codes.FAILURE_EPILOG in subparser.format_help(), name
        assert "--debug" in subparser.format_help(), name


def test_every_terminal_status_has_its_own_exit_code() -> None:
    assert set(EXIT_CODES) == TERMINAL_STATUSES
    codes = [*EXIT_CODES.values(), EXIT_NO_BATCH, EXIT_USAGE, EXIT_NOT_TERMINAL]
    assert len(set(codes)) == len(codes)
    assert EXIT_CODES["completed"] == 0


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("completed", 0),
        ("failed", 4),
        ("expired", 5),
        ("cancelled", 6),
        ("validating", 3),
        ("in_progress", 3),
        ("finalizing", 3),
    ],
)
def test_exit_code_after_a_wait(status: str, code: int) -> None:
    assert exit_code(_batch(status), waited=True) == code


def test_exit_code_without_wait_is_zero_for_any_batch_and_one_for_none() -> None:
    assert exit_code(_batch("in_progress"), waited=False) == 0
    assert exit_code(_batch("failed"), waited=False) == 0
    assert exit_code(None, waited=False) == EXIT_NO_BATCH
    assert exit_code(None, waited=True) == EXIT_NO_BATCH


def test_the_failure_epilog_names_each_failure_code_once() -> None:
    """A script reads the help to branch on a code: each must be there, and only once."""
    assert sorted(_listed(exit_codes.FAILURE_EPILOG)) == sorted(FAILURES)


def test_the_status_epilog_names_each_code_status_prints() -> None:
    listed = _listed(exit_codes.EPILOG)
    own = [*EXIT_CODES.values(), EXIT_NO_BATCH, EXIT_USAGE, EXIT_NOT_TERMINAL]
    assert sorted(listed) == sorted([*own, *FAILURES])


def test_the_cancel_epilog_names_each_code_cancel_prints() -> None:
    listed = _listed(exit_codes.CANCEL_EPILOG)
    own = [0, EXIT_NO_BATCH, EXIT_USAGE, exit_codes.EXIT_TOO_LATE_TO_CANCEL]
    assert sorted(listed) == sorted([*own, *FAILURES])


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("cancelling", 0),
        ("cancelled", 0),
        ("completed", exit_codes.EXIT_TOO_LATE_TO_CANCEL),
        ("failed", exit_codes.EXIT_TOO_LATE_TO_CANCEL),
        ("expired", exit_codes.EXIT_TOO_LATE_TO_CANCEL),
    ],
)
def test_cancel_exits_zero_only_for_a_batch_cancelling_or_cancelled(status: str, code: int) -> None:
    assert exit_codes.cancel_exit_code(_batch(status)) == code


def test_cancel_of_no_batch_exits_as_status_does() -> None:
    assert exit_codes.cancel_exit_code(None) == EXIT_NO_BATCH
