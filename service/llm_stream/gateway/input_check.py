"""Whether a batch may be created: its parameters (answered at once with 400) and its input
file (answered with a ``failed`` batch whose ``errors`` name each bad line, as OpenAI does).

The file rules are ``batch.input_file``'s, the ones ``llm-stream submit`` applies: every line
judged as the worker will judge it, unique ``custom_id``s, one ``url`` and one model (or
several, where allowed). The gateway adds only what a batch created over HTTP brings: the
batch's declared endpoint, which the lines' ``url`` must match, the limits of the
deployment's settings and, routing by model, that a live worker serves each model.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import pydantic

from llm_stream.batch.input_file import FileCheck, validate_batch_file
from llm_stream.batch.priority import priority_of
from llm_stream.client.manifests import build_manifest
from llm_stream.contracts import (
    OPENAI_BATCH_ENDPOINTS,
    PRIORITY_HEADER,
    SUPPORTED_ENDPOINTS,
    WorkerAnnouncement,
)
from llm_stream.gateway.errors import GatewayError, invalid
from llm_stream.gateway.models import BatchLineError
from llm_stream.settings import Settings

#: How ``FileCheck`` reports a problem; line 0 stands for the whole file.
_PROBLEM = re.compile(r"line (\d+): (.*)", re.DOTALL)


def check_parameters(
    batch_id: str,
    *,
    endpoint: str,
    completion_window: str,
    metadata: Mapping[str, str],
    settings: Settings,
) -> None:
    """Refuse (400, naming the parameter) what no input file could make valid."""
    if endpoint not in OPENAI_BATCH_ENDPOINTS:  # OpenAI's 400 for a value not in its list
        values = ", ".join(f"'{value}'" for value in OPENAI_BATCH_ENDPOINTS)
        raise invalid(
            f"Invalid value: '{endpoint[:256]}'. Supported values are: {values}.",
            "endpoint",
            "invalid_value",
        )
    _check_metadata(metadata, settings)
    try:  # the manifest's own rules: the completion window's form and length, metadata bounds
        build_manifest(
            batch_id,
            endpoint=endpoint,
            request_count=1,
            metadata=metadata,
            completion_window=completion_window,
            max_completion_window_s=settings.batch_max_completion_window_s,
        )
    except pydantic.ValidationError as error:
        raise _parameter_error(error) from None


def unserved_endpoint(
    endpoint: str,
    workers: Sequence[WorkerAnnouncement] | None,
    models: Collection[str] | None = None,
) -> BatchLineError | None:
    """Why no worker can answer a batch's endpoint, so that it fails at validation rather
    than at its expiry: OpenAI's endpoints this service never serves (moderations, images,
    videos), and, while ``workers`` are live, one that none of them announces (of those serving
    ``models``, when given). With no live worker (or none readable: ``workers`` None) an
    endpoint the service serves is taken: the batch waits for workers, as it would for a model.
    """
    if endpoint in SUPPORTED_ENDPOINTS:
        live = [w for w in workers or () if models is None or not set(models).isdisjoint(w.models)]
        if not live or any(w.endpoints is None or endpoint in w.endpoints for w in live):
            return None
        served = sorted({served for w in live for served in w.endpoints or ()})
        message = (
            f"No live worker serves {endpoint}: their models serve {', '.join(served)}. "
            "Create the batch with one of those endpoints, or start workers whose model "
            "serves this one."
        )
    else:
        served = [value for value in OPENAI_BATCH_ENDPOINTS if value in SUPPORTED_ENDPOINTS]
        message = (
            f"This service does not serve {endpoint} (it serves {', '.join(served)} of "
            "OpenAI's batch endpoints)."
        )
    return BatchLineError(code="unsupported_endpoint", message=message, param="endpoint")


def _check_metadata(metadata: Mapping[str, str], settings: Settings) -> None:
    if PRIORITY_HEADER in metadata and priority_of(metadata) is None:
        raise invalid(
            f"metadata {PRIORITY_HEADER} must be an integer (lower is sooner)", "metadata"
        )
    if len(metadata) > settings.batch_max_metadata_pairs:
        raise invalid(
            f"metadata holds {len(metadata)} pairs, at most "
            f"{settings.batch_max_metadata_pairs} are allowed",
            "metadata",
        )
    for key, value in metadata.items():
        if len(key) > settings.batch_max_metadata_key_chars:
            raise invalid(
                f"metadata key '{key[:80]}' is longer than "
                f"{settings.batch_max_metadata_key_chars} characters",
                "metadata",
            )
        if len(value) > settings.batch_max_metadata_value_chars:
            raise invalid(
                f"the value of metadata key '{key}' is longer than "
                f"{settings.batch_max_metadata_value_chars} characters",
                "metadata",
            )


def _parameter_error(error: pydantic.ValidationError) -> GatewayError:
    first = error.errors(include_url=False, include_input=False)[0]
    param = str(first["loc"][0]) if first["loc"] else None
    return invalid(f"Invalid '{param}': {first['msg']}", param, "invalid_value")


class InputCheck(NamedTuple):
    """An input file as judged: its request count, its problems (none: the batch may be
    submitted), each model its lines name, with the first line naming it, and the lines'
    estimated input tokens by model."""

    request_count: int
    errors: list[BatchLineError]
    models: dict[str, int]
    input_tokens: dict[str, int]


def check_input_file(
    path: Path,
    *,
    batch_id: str,
    endpoint: str,
    settings: Settings,
    served: Collection[str] | None = None,
) -> InputCheck:
    """Judge the file, reading it once, line by line; blocks, so call it from a worker
    thread. ``served``: the models live workers serve (routing by model): a model not among
    them is OpenAI's ``model_not_found`` at the first line naming it."""
    size = path.stat().st_size
    if size > settings.batch_max_file_bytes:
        message = f"the file is {size} bytes, over the {settings.batch_max_file_bytes}-byte limit"
        return InputCheck(0, [BatchLineError(code="file_too_large", message=message)], {}, {})
    check = validate_batch_file(
        path,
        batch_id=batch_id,
        max_bytes=settings.max_message_bytes,
        max_line_bytes=settings.batch_max_line_bytes,
        allow_mixed_models=settings.batch_allow_mixed_models,
    )
    errors = line_errors(check)
    if check.line_count == 0 and not errors:
        errors.append(BatchLineError(code="empty_file", message="the file holds no request lines"))
    if check.line_count > settings.batch_max_lines:
        message = f"the file holds more than {settings.batch_max_lines} request lines"
        errors.append(BatchLineError(code="too_many_requests", message=message))
    if check.endpoint is not None and check.endpoint != endpoint:
        message = f"the lines' url is {check.endpoint}, the batch's endpoint is {endpoint}"
        errors.append(BatchLineError(code="mismatched_endpoint", message=message, param="url"))
    if served is not None:
        errors.extend(_not_served(check.models, served))
    return InputCheck(check.line_count, errors, check.models, check.input_tokens)


def _not_served(models: Mapping[str, int], served: Collection[str]) -> list[BatchLineError]:
    return [
        BatchLineError(
            code="model_not_found",
            message=f"The model `{model}` does not exist or no worker serves it now.",
            param="body.model",
            line=line,
        )
        for model, line in models.items()
        if model not in served
    ]


def line_errors(check: FileCheck) -> list[BatchLineError]:
    """``FileCheck``'s problems as OpenAI's batch errors, each with its line number."""
    errors = []
    for problem in check.problems:
        matched = _PROBLEM.fullmatch(problem)
        number, message = (int(matched[1]), matched[2]) if matched else (0, problem)
        errors.append(BatchLineError(code="invalid_line", message=message, line=number or None))
    unreported = check.problem_count - len(check.problems)
    if unreported > 0:
        message = f"{unreported} more problems are not listed"
        errors.append(BatchLineError(code="too_many_errors", message=message))
    return errors
