"""Turn what stops a command into one or two lines a person can act on, and an exit code.

Every subcommand runs under ``run_reported``: an exception is classified (``classify``) into a
``Failure`` of one kind (``cli.exit_codes``), whose message says what went wrong and what to
try. The traceback is shown only with ``--debug`` (or ``LLM_STREAM_LOG_LEVEL=DEBUG``). A role
that logs JSON lines (``LLM_STREAM_LOG_FORMAT=json``) gets the same failure as a log record.
Kafka's problems are diagnosed where the connection is made (``kafka.diagnosis``); here each
kind gets its exit code.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pydantic

from llm_stream.cli import exit_codes
from llm_stream.client.served_models import ModelNotServedError
from llm_stream.engine.model_path import ModelPathError
from llm_stream.engine.start_log import EngineStartError
from llm_stream.errors import LlmStreamError
from llm_stream.kafka.diagnosis import KafkaConnectionLog, ProblemKind, diagnose, first_line
from llm_stream.settings import SettingsRefusedError

logger = logging.getLogger("llm_stream.cli")


@dataclass(frozen=True)
class Failure:
    """What stopped a command: its kind, exit code and the message shown to the user."""

    kind: str
    code: int
    message: str


class CommandError(LlmStreamError):
    """A failure whose code already knows what to tell the user (see ``cli.file_checks``)."""

    kind = "command"
    code = exit_codes.EXIT_UNEXPECTED


class InputFileError(CommandError):
    kind = "input_file"
    code = exit_codes.EXIT_INPUT_FILE


class OutputNotWritableError(CommandError):
    kind = "output_not_writable"
    code = exit_codes.EXIT_OUTPUT_NOT_WRITABLE


class PortInUseError(CommandError):
    kind = "port_in_use"
    code = exit_codes.EXIT_USAGE


class MissingExtraError(CommandError):
    """A command whose optional dependencies (a pip extra) are not installed."""

    kind = "missing_extra"
    code = exit_codes.EXIT_USAGE


class NoSuchBatchError(CommandError):
    kind = "no_such_batch"
    code = exit_codes.EXIT_NO_BATCH


INTERRUPTED = Failure("interrupted", exit_codes.EXIT_INTERRUPTED, "interrupted; stopped cleanly")


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error, its causes and contexts, and the members of exception groups."""
    pending, seen = [error], set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)


#: Each kind of Kafka problem's exit code.
_KAFKA_EXIT_CODES = {
    ProblemKind.UNREACHABLE: exit_codes.EXIT_BROKER_UNREACHABLE,
    ProblemKind.REFUSED: exit_codes.EXIT_BROKER_REFUSED,
    ProblemKind.TOPIC_MISSING: exit_codes.EXIT_TOPIC_MISSING,
    ProblemKind.SETTINGS: exit_codes.EXIT_USAGE,
}


def _kafka(error: BaseException, log: KafkaConnectionLog | None) -> Failure | None:
    problem = diagnose(error, log)
    if problem is None:
        return None
    return Failure(problem.kind.value, _KAFKA_EXIT_CODES[problem.kind], problem.message)


def _hub_errors() -> tuple[type[BaseException], ...]:
    """huggingface_hub's errors for a model name that is no repository it can find (none
    where vLLM, which brings it, is not installed)."""
    try:
        from huggingface_hub import errors
    except ImportError:
        return ()
    return (
        errors.HFValidationError,
        errors.RepositoryNotFoundError,
        errors.GatedRepoError,
        errors.RevisionNotFoundError,
        errors.LocalEntryNotFoundError,
    )


def _not_served(error: BaseException) -> Failure | None:
    if not isinstance(error, ModelNotServedError):
        return None
    message = f"{error}; nothing was published. Start a worker for it, or name another model."
    return Failure("model_not_served", exit_codes.EXIT_MODEL_NOT_SERVED, message)


def _settings(error: BaseException) -> Failure | None:
    """Settings the environment gives that are invalid or contradict each other."""
    if isinstance(error, SettingsRefusedError):
        message = first_line(error, 400)
    elif isinstance(error, pydantic.ValidationError) and error.title == "Settings":
        problems = "; ".join(
            f"LLM_STREAM_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
            for e in error.errors(include_url=False, include_input=False)
        )
        message = f"invalid settings: {problems}. Fix these environment variables or flags."
    else:
        return None
    return Failure("settings", exit_codes.EXIT_USAGE, message)


def _model(error: BaseException) -> Failure | None:
    text = str(error)
    if isinstance(error, ModelPathError):
        message = text
    elif isinstance(error, _hub_errors()) or "does not appear to have a file named" in text:
        message = (
            f"--model is not a model vLLM can load ({first_line(error)}). Give a local model "
            "directory (with config.json) or a Hugging Face model id this machine can fetch."
        )
    else:
        return None
    return Failure("model_path", exit_codes.EXIT_MODEL_PATH, message)


#: Lines of vLLM's (and torch's) start-up failures, and what to try for each.
_ENGINE_FAILURES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"out of memory|OutOfMemoryError|larger than the available KV cache memory"
            r"|No available memory for the cache blocks",
            re.I,
        ),
        "Try a smaller --max-model-len or --max-num-seqs, a higher --gpu-memory-utilization, "
        "or a smaller model.",
    ),
    (
        re.compile(r"No CUDA GPUs are available|Failed to infer device type|CUDA driver", re.I),
        "Check that the device is visible (nvidia-smi, CUDA_VISIBLE_DEVICES) and that this "
        "vLLM build is the one for this machine.",
    ),
    (
        re.compile(r"engine core initialization", re.I),
        "The engine's own log above names the cause (its last ERROR line).",
    ),
)


def _engine_config(error: BaseException) -> Failure | None:
    """vLLM refusing its engine flags: its config classes validate with pydantic."""
    if not isinstance(error, pydantic.ValidationError) or not error.title.endswith("Config"):
        return None
    problems = "; ".join(
        str(e["msg"]).removeprefix("Value error, ")
        for e in error.errors(include_url=False, include_input=False)
    )
    reason = problems if len(problems) <= 300 else f"{problems[:297]}..."
    return Failure(
        "engine_start",
        exit_codes.EXIT_ENGINE_START,
        f"vLLM refused the engine flags ({error.title}): {reason}\n"
        "Fix the engine flags (see --help).",
    )


def classify_engine_failure(text: str) -> Failure | None:
    """The engine-start failure ``text`` (an exception's message) describes, if any."""
    for pattern, remedy in _ENGINE_FAILURES:
        match = pattern.search(text)
        if match is None:
            continue
        line = next(line for line in text.splitlines() if pattern.search(line)).strip()
        reason = line if len(line) <= 200 else f"{line[:197]}..."
        return Failure(
            "engine_start",
            exit_codes.EXIT_ENGINE_START,
            f"the vLLM engine failed to start: {reason}\n{remedy}",
        )
    return None


def _engine_start(error: BaseException) -> Failure | None:
    if not isinstance(error, EngineStartError):  # its message is the engine core's own line
        return classify_engine_failure(f"{type(error).__name__}: {error}")
    return classify_engine_failure(str(error)) or Failure(
        "engine_start",
        exit_codes.EXIT_ENGINE_START,
        f"the vLLM engine failed to start: {first_line(error)}\n"
        "The engine's own log above has the details.",
    )


def classify(error: BaseException, log: KafkaConnectionLog | None = None) -> Failure:
    """The failure ``error`` stands for; an unknown error is ``unexpected``, in one line."""
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED
    chain = list(_chain(error))
    for found in chain:
        if isinstance(found, CommandError):
            return Failure(found.kind, found.code, str(found))
    checks: tuple[Callable[[BaseException], Failure | None], ...] = (
        lambda e: _kafka(e, log),
        _not_served,
        _settings,
        _model,
        _engine_config,
        _engine_start,
    )
    for check in checks:
        for found in chain:
            failure = check(found)
            if failure is not None:
                return failure
    return Failure(
        "unexpected",
        exit_codes.EXIT_UNEXPECTED,
        f"{type(error).__name__}: {first_line(error)}\nRerun with --debug for the traceback.",
    )


def debug_requested(args: argparse.Namespace) -> bool:
    """``--debug`` on the command line, or ``LLM_STREAM_LOG_LEVEL=DEBUG``."""
    from_env = os.environ.get("LLM_STREAM_LOG_LEVEL", "").upper() == "DEBUG"
    return bool(getattr(args, "debug", False)) or from_env


def _logs_json() -> bool:
    """Whether failures go out as JSON log records: the process logs JSON, or it failed
    before configuring its logging while ``LLM_STREAM_LOG_FORMAT=json`` asks for it (a worker
    whose --model is wrong, in a container whose logs are collected)."""
    from llm_stream.ops.logs import JsonFormatter, configure_logging

    root = logging.getLogger()
    if any(isinstance(handler.formatter, JsonFormatter) for handler in root.handlers):
        return True
    if root.handlers or os.environ.get("LLM_STREAM_LOG_FORMAT", "").lower() != "json":
        return False
    configure_logging("json")
    return True


def report(failure: Failure, error: BaseException | None, *, debug: bool) -> None:
    """Tell the user: a structured log record where the process logs JSON, else stderr."""
    exc_info = error if debug and error is not None else None
    if _logs_json():
        extra = {"error_kind": failure.kind, "exit_code": failure.code}
        logger.error(failure.message, exc_info=exc_info, extra=extra)
        return
    if exc_info is not None:
        traceback.print_exception(exc_info, file=sys.stderr)
    prefix = "stopped" if failure is INTERRUPTED else "error"
    print(f"{prefix}: {failure.message}", file=sys.stderr, flush=True)


def run_reported(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a subcommand's handler; turn what stops it into a message and an exit code."""
    debug = debug_requested(args)
    if debug:
        os.environ["LLM_STREAM_LOG_LEVEL"] = "DEBUG"  # roles configure their logging from it
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s %(message)s")
    log = KafkaConnectionLog.install()
    try:
        return handler(args)
    except KeyboardInterrupt as error:
        report(INTERRUPTED, error, debug=debug)
        return INTERRUPTED.code
    except Exception as error:
        failure = classify(error, log)
        report(failure, error, debug=debug)
        return failure.code
    finally:
        log.remove()
