"""Message contracts of every topic, as pydantic models.

The wire format is the OpenAI Batch API's line format plus a ``batch_id``, so that a line read
from an OpenAI batch input file can be published as is and a result line can be written to an
OpenAI batch output file as is. ``contracts/*.schema.json`` are generated from these models.
"""

from __future__ import annotations

import re
import time
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

#: Batch ids become directory names: letters, digits, ``_`` and ``-`` only, no dots or slashes.
BATCH_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"
_BATCH_ID_RE = re.compile(BATCH_ID_PATTERN)

BatchId = Annotated[str, StringConstraints(pattern=BATCH_ID_PATTERN)]
CustomId = Annotated[str, StringConstraints(min_length=1, max_length=512)]

#: Endpoints a worker answers, exactly as vLLM's OpenAI server routes them (score and rerank
#: under each path vLLM's server takes for them); which of them a worker serves depends on its
#: model (``WorkerAnnouncement.endpoints``).
SUPPORTED_ENDPOINTS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/score",
    "/v1/score",
    "/rerank",
    "/v1/rerank",
    "/v2/rerank",
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
)
#: The values OpenAI's Batch API takes for a batch's ``endpoint``: what the gateway accepts.
#: Those no worker answers (moderations, images, videos) fail the batch at validation.
OPENAI_BATCH_ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)


_WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: ASCII digits only (``str.isdigit`` accepts ``"²"``, which ``int`` refuses), at most 7 of them.
COMPLETION_WINDOW_PATTERN = r"^[0-9]{1,7}[smhd]$"
_WINDOW_RE = re.compile(r"[0-9]{1,7}[smhd]")
#: Latest ``created_at`` accepted: 9999-12-31T23:59:59Z, so any date library can show it.
MAX_CREATED_AT = 253_402_300_799
MAX_REQUEST_COUNT = 10_000_000
#: Validation context key of ``BatchManifest``: the longest window a new batch may ask for.
MAX_COMPLETION_WINDOW_CONTEXT = "max_completion_window_s"
_REASON_LIMIT = 500


def completion_window_seconds(window: str) -> int | None:
    """Seconds in a completion window such as ``24h``; None if it is not of that form."""
    if not _WINDOW_RE.fullmatch(window):
        return None
    return int(window[:-1]) * _WINDOW_UNITS[window[-1]]


def completion_window_text(seconds: int) -> str:
    """``seconds`` as a completion window (``3d``, ``90m``), in the largest unit that fits."""
    unit = next(unit for unit in "dhms" if seconds % _WINDOW_UNITS[unit] == 0)
    return f"{seconds // _WINDOW_UNITS[unit]}{unit}"


#: A project's id: what a key, a file and a batch belong to (a label of metrics, a name in the
#: file store's index), so a short safe name.
PROJECT_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_PROJECT_RE = re.compile(PROJECT_PATTERN)
ProjectId = Annotated[str, StringConstraints(pattern=PROJECT_PATTERN)]
#: The project of every object that names none: made before projects existed, by a producer
#: that named none, or by a key of no other project.
DEFAULT_PROJECT = "default"
#: The Kafka header in which a request record names its producer's project.
PROJECT_HEADER = "llm-stream-project"
#: The Kafka header of a request record's priority: an integer, lower is sooner (vLLM's
#: order), default 0; the worker's waiting queue and vLLM's priority scheduler both read it.
PRIORITY_HEADER = "llm-stream-priority"
#: The Kafka header of a request record's deadline: Unix seconds (a decimal number); a request
#: still waiting when it passes is answered ``batch_expired`` instead of running.
DEADLINE_HEADER = "llm-stream-deadline"


def is_project_id(value: str) -> bool:
    return bool(_PROJECT_RE.fullmatch(value))


def owner_project(project: str | None) -> str:
    """The project an object belongs to: the one it names, else the default project."""
    return project or DEFAULT_PROJECT


def stored_project(project: str | None) -> str | None:
    """What an object records of its project: nothing for the default one, so objects of a
    deployment without projects stay as they were, and old and new ones read alike."""
    return None if project in (None, DEFAULT_PROJECT) else project


def is_safe_batch_id(value: str) -> bool:
    """True when ``value`` can be used as a batch id (and so as a directory name)."""
    return bool(_BATCH_ID_RE.fullmatch(value))


class RequestMessage(BaseModel):
    """One OpenAI batch input line plus the batch it belongs to (topic: requests).

    ``method`` and ``url`` are free strings on the wire: a worker answers an unsupported
    method or endpoint with an error line for that ``custom_id`` rather than dropping it.
    """

    model_config = ConfigDict(extra="forbid", title="Request")

    batch_id: BatchId
    custom_id: CustomId
    method: str = Field("POST", description='HTTP method; only "POST" is served.')
    url: str = Field(description="Endpoint, e.g. /v1/chat/completions.")
    body: dict[str, Any] = Field(description="The request body, as for vLLM's OpenAI server.")


class ResponseData(BaseModel):
    """The HTTP response a request would have had from vLLM's OpenAI server."""

    model_config = ConfigDict(title="ResponseData")

    status_code: int = Field(description="HTTP status code: 200 on success.")
    request_id: str = Field(description="Engine request id.")
    body: dict[str, Any] | None = Field(
        description="Response body, or the error body vLLM returns."
    )


class ErrorData(BaseModel):
    """A failure that produced no HTTP response (OpenAI's ``error`` field of an output line)."""

    model_config = ConfigDict(title="ErrorData")

    code: str
    message: str


class ResultMessage(BaseModel):
    """One OpenAI batch output line plus its batch (topic: results, key: batch_id)."""

    model_config = ConfigDict(title="Result")

    batch_id: BatchId
    id: str = Field(description="Unique id of this output line.")
    custom_id: CustomId
    response: ResponseData | None
    error: ErrorData | None = None

    @property
    def succeeded(self) -> bool:
        """True for lines that belong in the output file, False for the error file."""
        return self.error is None and self.response is not None and self.response.status_code == 200


#: Request/reply headers, FastStream's names (Spring Kafka's ``kafka_replyTopic`` and
#: ``kafka_correlationId`` are read too): a request carrying them is a single request.
REPLY_TO_HEADER = "reply_to"
CORRELATION_ID_HEADER = "correlation_id"


class SingleRequestMessage(BaseModel):
    """One request that asks for a reply (topic: requests, headers ``reply_to`` and
    ``correlation_id``): an OpenAI batch input line whose ``custom_id`` is optional, no batch.
    A ``batch_id`` it carries anyway is not used."""

    model_config = ConfigDict(extra="forbid", title="SingleRequest")

    custom_id: CustomId | None = Field(None, description="Echoed in the reply when given.")
    method: str = Field("POST", description='HTTP method; only "POST" is served.')
    url: str = Field(description="Endpoint, e.g. /v1/chat/completions.")
    body: dict[str, Any] = Field(description="The request body, as for vLLM's OpenAI server.")


class ReplyMessage(BaseModel):
    """The answer to a single request (topic: the request's ``reply_to``, key: the request's).

    An OpenAI batch output line with the request's ``correlation_id`` instead of a batch:
    OpenAI line parsers read it as is, and the id survives tools that drop headers. It is
    sent at least once: a consumer keeps the first reply per ``correlation_id``.
    """

    model_config = ConfigDict(title="Reply")

    id: str = Field(description="Unique id of this reply.")
    custom_id: CustomId | None = Field(None, description="The request's, if it named one.")
    correlation_id: str = Field(description="The request's correlation id header.")
    response: ResponseData | None
    error: ErrorData | None = None


MetadataKey = Annotated[str, StringConstraints(max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]
#: OpenAI's bounds on a batch's metadata: 16 pairs, keys of 64 characters, values of 512.
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)]
CompletionWindow = Annotated[str, StringConstraints(pattern=COMPLETION_WINDOW_PATTERN)]
MAX_MODEL_NAME_LENGTH = 256
#: Most distinct models one batch's lines may name (when several are allowed at all).
MAX_BATCH_MODELS = 16
#: Bounds a manifest's token estimate (50,000 lines of OpenAI's longest context, and then some).
MAX_INPUT_TOKENS = 10**12
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_MODEL_NAME_LENGTH)]


#: OpenAI's bounds on ``expires_after.seconds`` (files) and ``output_expires_after.seconds``.
MIN_EXPIRES_AFTER_S = 3600
MAX_EXPIRES_AFTER_S = 2_592_000


class ExpiresAfter(BaseModel):
    """OpenAI's expiration policy of a file: ``seconds`` after its ``created_at``."""

    model_config = ConfigDict(extra="forbid", title="ExpiresAfter")

    anchor: Literal["created_at"] = Field(description="The only anchor OpenAI names.")
    seconds: int = Field(ge=MIN_EXPIRES_AFTER_S, le=MAX_EXPIRES_AFTER_S)


class BatchManifest(BaseModel):
    """Announces a batch before its requests (topic: batches, key: batch_id).

    The aggregator knows a batch is complete when it holds ``request_count`` distinct
    ``custom_id`` results for it. Every field is bounded (OpenAI's limits for metadata), so
    that no manifest a topic carries can crash or overflow the aggregator's arithmetic.
    """

    model_config = ConfigDict(extra="forbid", title="BatchManifest")

    batch_id: BatchId
    endpoint: str = Field(
        description="Endpoint of the batch's lines; `submit` enforces one supported endpoint per "
        "batch, `run-batch` (like vLLM's) accepts mixed files and records the first line's."
    )
    request_count: int = Field(
        ge=1, le=MAX_REQUEST_COUNT, strict=True, description="Number of request lines."
    )
    completion_window: CompletionWindow = Field(
        "24h", description="Digits and a unit (s, m, h or d), as OpenAI's `24h`."
    )
    metadata: Metadata = Field(default_factory=dict)
    model: ModelName | None = Field(
        None, description="The lines' `body.model` (the client takes the first line's)."
    )
    models: list[ModelName] | None = Field(
        None,
        max_length=MAX_BATCH_MODELS,
        description="Every model the lines name, for a batch of several models (a setting "
        "allows them); unset for a batch of one.",
    )
    created_at: int = Field(
        default_factory=lambda: int(time.time()),
        ge=0,
        le=MAX_CREATED_AT,
        strict=True,
        description="Unix seconds.",
    )
    project: ProjectId | None = Field(
        None,
        description="The project the batch belongs to (its files too); unset: the default "
        "project. Left out when unset: readers older than the field refuse unknown fields.",
    )
    input_tokens: dict[ModelName, Annotated[int, Field(ge=0, le=MAX_INPUT_TOKENS)]] | None = Field(
        None,
        max_length=MAX_BATCH_MODELS,
        description="The lines' input tokens by model, estimated when the batch was "
        "created: what enqueued-token quotas count while the batch is unfinished. Left out "
        "when unknown (a producer that streams its lines without counting them).",
    )
    output_expires_after: ExpiresAfter | None = Field(
        None,
        description="When the batch's output and error files expire, after they are written "
        "(OpenAI's output_expires_after); unset: the deployment's default. Left out when unset.",
        exclude_if=lambda policy: policy is None,
    )

    def served_by(self) -> list[str]:
        """The models whose workers answer this batch's lines."""
        if self.models:
            return list(self.models)
        return [self.model] if self.model is not None else []

    @field_validator("completion_window")
    @classmethod
    def _within_the_longest_allowed(cls, window: str, info: ValidationInfo) -> str:
        """A batch being created is held to the deployment's longest window, given as the
        validation context ``max_completion_window_s`` (``build_manifest`` gives it); a manifest
        read from a topic has no context and is taken as it was published."""
        longest = (info.context or {}).get(MAX_COMPLETION_WINDOW_CONTEXT)
        seconds = completion_window_seconds(window)
        if longest is not None and seconds is not None and seconds > longest:
            raise ValueError(
                f"completion window {window} is longer than {completion_window_text(longest)}, "
                "the longest this deployment allows (batch_max_completion_window_s)"
            )
        return window


def parse_manifest(value: bytes | None) -> BatchManifest | str:
    """A manifest record's value as a manifest, or why it is not one (short, ASCII).

    Never raises, whatever the bytes: the caller dead-letters a bad manifest with the reason
    instead of letting it stop the manifest reader.
    """
    if value is None:
        return "tombstone: the record has no value"
    try:
        return BatchManifest.model_validate_json(value)
    except ValidationError as error:
        reason = "; ".join(
            f"{'.'.join(str(part) for part in detail['loc']) or 'value'}: {detail['msg']}"
            for detail in error.errors(
                include_url=False, include_input=False, include_context=False
            )
        )
    except Exception as error:  # defensive: pydantic-core reports bad JSON as ValidationError
        reason = f"{type(error).__name__}: {error}"
    reason = reason.encode("ascii", "backslashreplace").decode("ascii")
    return reason if len(reason) <= _REASON_LIMIT else reason[: _REASON_LIMIT - 3] + "..."


class RequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class BatchUsage(BaseModel):
    """Tokens of a batch's answered requests, in OpenAI's shape (``openai.types.BatchUsage``)."""

    input_tokens: int = 0
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int = 0


class BatchStatus(StrEnum):
    """A batch object's ``status``; its value is OpenAI's string."""

    VALIDATING = "validating"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


class BatchObject(BaseModel):
    """The OpenAI batch object (topic: batch-status, key: batch_id).

    Published as progress while results arrive and once more when the files are written.
    ``output_file_id``/``error_file_id`` are file ids (``file-<batch_id>-output``) that a file
    store resolves (``llm_stream.files.store``), not paths on the aggregator's host.
    """

    model_config = ConfigDict(title="Batch")

    id: BatchId
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: dict[str, Any] | None = None
    input_file_id: str | None = None
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts
    metadata: dict[str, str] = Field(default_factory=dict)
    model: str | None = None
    usage: BatchUsage = Field(default_factory=BatchUsage)
    project: ProjectId | None = Field(
        None,
        description="The project the batch belongs to; unset (and left out): the default one.",
        exclude_if=lambda project: project is None,
    )
    output_expires_after: ExpiresAfter | None = Field(
        None,
        description="The expiration policy of its output and error files, as the batch was "
        "created with it; unset (and left out): the deployment's default.",
        exclude_if=lambda policy: policy is None,
    )


class WebhookFailure(BaseModel):
    """A webhook delivery that failed every attempt (topic: webhook-failures, key: batch_id):
    enough to replay it."""

    model_config = ConfigDict(title="WebhookFailure")

    event: dict[str, Any] = Field(description="The event as it was sent (OpenAI's shape).")
    url: str = Field(description="The endpoint, without its query string or credentials.")
    attempts: int = Field(description="Delivery attempts made.")
    error: str = Field(description="The last attempt's error, truncated.")
    failed_at: int = Field(description="Unix seconds of the last attempt.")


class WorkerAnnouncement(BaseModel):
    """A live worker and what it serves (topic: workers, key: ``worker_id``), published at
    start and every heartbeat interval; a tombstone when it stops. Readers count a worker as
    live until ``heartbeat_at`` is ``expires_after_s`` old."""

    model_config = ConfigDict(title="WorkerAnnouncement")

    worker_id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    models: list[ModelName] = Field(
        min_length=1, max_length=64, description="Served model names, as vLLM's."
    )
    consumer_group: str = Field(description="The worker's consumer group.")
    topics: list[str] = Field(description="The requests topics the worker reads.")
    max_concurrency: int = Field(ge=1, description="Requests its engine runs at once.")
    endpoints: list[Annotated[str, StringConstraints(max_length=256)]] | None = Field(
        default=None,
        max_length=64,
        description="The endpoints its model serves; absent while its engine starts (and from "
        "a worker older than this field): not known, so no batch is refused for it.",
    )
    started_at: float = Field(ge=0, description="Unix seconds.")
    heartbeat_at: float = Field(ge=0, description="Unix seconds of this announcement.")
    expires_after_s: float = Field(gt=0, description="Live until heartbeat_at + this.")


class RateCount(BaseModel):
    """A gateway replica's request count for one rate limit and window (topic: rate-counts,
    key: ``<replica>/<counter>``, compacted), published when it changes; the other replicas
    add it to theirs, so a limit holds across replicas."""

    model_config = ConfigDict(title="RateCount")

    replica: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    counter: Annotated[str, StringConstraints(min_length=1, max_length=1024)] = Field(
        description="The limit, the caller (a digest of the key, or an address) and the "
        "window, as the rate limiter names them."
    )
    count: int = Field(ge=0, description="Requests the replica counted in that window.")
    expires_at: float = Field(ge=0, description="Unix seconds after which it no longer counts.")


class Judgement(BaseModel):
    """A reviewer's judgement of one batch line (topic: judgements, key:
    ``<batch_id>/<custom_id>``, compacted: the last judgement of a line wins). Review needs no
    database: every service that wants them follows the topic."""

    model_config = ConfigDict(title="Judgement")

    object: Literal["batch.judgement"] = "batch.judgement"
    batch_id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    custom_id: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    verdict: Literal["accepted", "rejected", "gold"] = Field(
        description="gold: accepted and fit for an evaluation set."
    )
    corrected: str | None = Field(
        None, max_length=1_000_000, description="The answer as the reviewer fixed it."
    )
    note: str | None = Field(None, max_length=10_000)
    reviewer: str | None = Field(
        None, max_length=256, description="Who judged: a project, a Label Studio user."
    )
    judged_at: float = Field(ge=0, description="Unix seconds.")

    @property
    def key(self) -> bytes:
        return f"{self.batch_id}/{self.custom_id}".encode()


ALL_CONTRACTS: dict[str, type[BaseModel]] = {
    "request": RequestMessage,
    "result": ResultMessage,
    "single-request": SingleRequestMessage,
    "reply": ReplyMessage,
    "batch-manifest": BatchManifest,
    "batch": BatchObject,
    "webhook-failure": WebhookFailure,
    "worker": WorkerAnnouncement,
    "rate-count": RateCount,
    "judgement": Judgement,
}
