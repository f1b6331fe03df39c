"""Prometheus metrics of the service.

Counters and histograms count what this process did, whichever roles it runs (run-batch runs a
worker and an aggregator in one process), so they live in the default registry, where vLLM
registers its own ``vllm:*`` metrics: one /metrics endpoint serves both; ours are prefixed
``llm_stream_`` and never re-implement vLLM's. Gauges that describe one role's state are read
from that role at scrape time and registered in the role's own registry (``OpenBatchGauges``),
never bound to a global from a constructor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)

REQUESTS_CONSUMED = Counter(
    "llm_stream_requests_consumed_total", "Request messages taken from the requests topic."
)
REQUESTS_ANSWERED = Counter(
    "llm_stream_requests_answered_total",
    "Result lines published, by endpoint and HTTP status code.",
    ["endpoint", "status_code"],
)
REQUESTS_FAILED = Counter(
    "llm_stream_requests_failed_total",
    "Result lines published with a non-200 status, by endpoint and status code.",
    ["endpoint", "status_code"],
)
REQUESTS_IN_FLIGHT = Gauge(
    "llm_stream_requests_in_flight", "Requests inside the worker (engine or publishing)."
)
REQUESTS_WAITING = Gauge(
    "llm_stream_requests_waiting",
    "Requests fetched but not started, in the worker's priority queue.",
)
REQUESTS_EXPIRED = Counter(
    "llm_stream_requests_expired_total",
    "Requests answered with a batch_expired line: their deadline passed before they ran.",
)
REQUESTS_CANCELLED = Counter(
    "llm_stream_requests_cancelled_total",
    "Requests answered with a batch_cancelled line, by stage: queued (never run) or running "
    "(aborted in the engine).",
    ["stage"],
)
JUDGEMENTS = Counter(
    "llm_stream_judgements_total",
    "Judgements of batch lines published (gateway API and web page, Label Studio pulls), by "
    "verdict.",
    ["verdict"],
)
DEAD_LETTERS = Counter("llm_stream_dead_letters_total", "Messages sent to the dead-letter topic.")
BATCHES_WAITING_FOR_MODEL = Gauge(
    "llm_stream_batches_waiting_for_model",
    "Open batches (of this aggregator's partitions) naming a model that no live worker has "
    "served for unserved_model_report_s (requests routed by model).",
)
REQUESTS_LEFT_TO_OTHERS = Counter(
    "llm_stream_requests_left_to_other_groups_total",
    "Records of the shared requests topic left to the worker group of their model (requests "
    "routed by model).",
)
PROMPT_TOKENS = Counter(
    "llm_stream_prompt_tokens_total", "Prompt tokens of answered requests.", ["endpoint"]
)
COMPLETION_TOKENS = Counter(
    "llm_stream_completion_tokens_total", "Generated tokens of answered requests.", ["endpoint"]
)
ENGINE_DURATION = Histogram(
    "llm_stream_engine_duration_seconds",
    "Time a request spent in the engine (queue, prefill and decode).",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "llm_stream_time_to_first_token_seconds",
    "Engine time to first token, as vLLM measured it for the request.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
END_TO_END_LATENCY = Histogram(
    "llm_stream_end_to_end_latency_seconds",
    "From the request's Kafka timestamp to its result being published.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "llm_stream_consumer_lag",
    "Messages between a consumer's position and the end of the partition.",
    ["group", "topic", "partition"],
)
FETCH_ERRORS = Counter(
    "llm_stream_fetch_errors_total",
    "Failed fetches of a consume loop (undecodable record batches, broker errors), by error.",
    ["group", "error"],
)
COMMIT_FAILURES = Counter(
    "llm_stream_commit_failures_total",
    "Offset commits that failed (fenced member, rebalance in progress, broker away) and were "
    "retried later, by consumer group and error.",
    ["group", "error"],
)
STALLED_PARTITIONS = Gauge(
    "llm_stream_stalled_partitions",
    "Owned partitions with pending records that made no progress for the stall timeout.",
    ["group"],
)
RESULTS_TOO_LARGE = Counter(
    "llm_stream_results_too_large_total",
    "Answers larger than the largest publishable message, replaced by an error line.",
)

RESULTS_RECEIVED = Counter(
    "llm_stream_aggregator_results_received_total", "Result messages read by the aggregator."
)
RESULTS_DUPLICATE = Counter(
    "llm_stream_aggregator_results_duplicate_total",
    "Result messages dropped because their custom_id was already answered.",
)
RESULTS_REVOKED = Counter(
    "llm_stream_aggregator_results_revoked_total",
    "Result messages dropped because their partition was revoked while their poll was handled "
    "(the partition's next owner reads them).",
)
RESULTS_INVALID = Counter(
    "llm_stream_aggregator_results_invalid_total", "Result messages that are not valid results."
)
BATCHES_RETIRED = Counter(
    "llm_stream_batches_retired_total",
    "Batches that ended before the retention, given tombstones on the batches and status topics.",
)
BATCHES_STALLED = Gauge(
    "llm_stream_batches_stalled",
    "Open batches of this aggregator with no new result for batch_stall_after_s and none of "
    "their requests pending: results were lost, and only a resume finishes them.",
)
FILES_EXPIRED = Counter(
    "llm_stream_files_expired_total",
    "Files deleted from the store because they expired (their expires_at passed).",
)
BATCHES_COMPLETED = Counter(
    "llm_stream_batches_completed_total",
    "Batches whose output files were written, by final status (completed, expired, failed, "
    "cancelled).",
    ["status"],
)
LINES_WRITTEN = Counter(
    "llm_stream_aggregator_lines_written_total",
    "Lines written to batch files, by file (output or error).",
    ["file"],
)

GATEWAY_REQUESTS = Counter(
    "llm_stream_gateway_requests_total",
    "HTTP requests the gateway answered, by route (its template, or unmatched), method and "
    "status code.",
    ["route", "method", "status_code"],
)
GATEWAY_REQUEST_DURATION = Histogram(
    "llm_stream_gateway_request_duration_seconds",
    "Time the gateway took to answer a request (an upload's includes receiving it).",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
GATEWAY_UPLOAD_BYTES = Counter(
    "llm_stream_gateway_upload_bytes_total", "Bytes of uploaded files the gateway stored."
)
GATEWAY_PROJECT_REQUESTS = Counter(
    "llm_stream_gateway_project_requests_total",
    "API requests a key let through, by the key's project (configured, so bounded); an "
    "admin key's count under its project too.",
    ["project"],
)
GATEWAY_QUOTA_REFUSALS = Counter(
    "llm_stream_gateway_quota_refusals_total",
    "Requests and batches refused by a limit, by project and reason: token_limit_exceeded and "
    "batch_limit_exceeded (a batch created failed), rate_limit_exceeded (429; the login form's "
    "under project '-').",
    ["project", "reason"],
)
GATEWAY_SUBMITTED_TOKENS = Counter(
    "llm_stream_gateway_submitted_tokens_total",
    "Estimated input tokens of the batches the gateway submitted, by project.",
    ["project"],
)
GATEWAY_BATCHES_CREATED = Counter(
    "llm_stream_gateway_batches_created_total",
    "Batches created through the gateway, by outcome: submitted, or failed (the input file "
    "broke a rule; nothing was published to the requests topic).",
    ["outcome"],
)

WEBHOOK_DELIVERIES = Counter(
    "llm_stream_webhook_deliveries_total",
    "Webhook events by type and outcome: delivered (the endpoint answered 2xx) or failed "
    "(every attempt failed; recorded on the webhook-failures topic).",
    ["type", "outcome"],
)
WEBHOOK_ATTEMPTS_FAILED = Counter(
    "llm_stream_webhook_attempts_failed_total",
    "Webhook delivery attempts that got no 2xx answer, by reason: the HTTP status code or the "
    "error (ConnectTimeout, ConnectError, ..., AttemptTimeout for an attempt out of time).",
    ["reason"],
)


class OpenBatchGauges(Collector):
    """An aggregator's open batches, read from it at scrape time."""

    def __init__(
        self,
        open_batches: Callable[[], int],
        oldest_age: Callable[[], float],
        held: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        """``held``: how many batches each piece of the aggregator's state holds, which must
        follow open work, not history (a gauge an SRE can watch for that)."""
        self._open_batches = open_batches
        self._oldest_age = oldest_age
        self._held = held

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "llm_stream_batches_open",
            "Batches with results but no files yet.",
            value=self._open_batches(),
        )
        yield GaugeMetricFamily(
            "llm_stream_oldest_open_batch_age_seconds",
            "Seconds since the first result of the oldest batch still waiting for results or "
            "its manifest; a batch stuck here also holds back its partition's commits.",
            value=self._oldest_age(),
        )
        if self._held is not None:
            held = GaugeMetricFamily(
                "llm_stream_aggregator_batches_held",
                "Batches each piece of the aggregator's state holds (open, manifests, "
                "cancelling, finished): bounded by open work, whatever the history.",
                labels=["state"],
            )
            for state, count in self._held().items():
                held.add_metric([state], count)
            yield held


class EnqueuedGauges(Collector):
    """The gateway's view of unfinished batches per project and model, read at scrape time:
    what the quotas count (bounded by open work: a finished batch leaves the series)."""

    def __init__(self, enqueued: Callable[[], Iterable[tuple[str, str, tuple[int, int]]]]) -> None:
        """``enqueued``: ``(project, model, (batches, tokens))`` for each pair with open work."""
        self._enqueued = enqueued

    def collect(self) -> Iterator[Metric]:
        batches = GaugeMetricFamily(
            "llm_stream_gateway_batches_in_flight",
            "Unfinished batches, by project and model (what quota_batches_in_flight bounds).",
            labels=["project", "model"],
        )
        tokens = GaugeMetricFamily(
            "llm_stream_gateway_enqueued_tokens",
            "Estimated input tokens of unfinished batches, by project and model (what "
            "quota_enqueued_tokens bounds).",
            labels=["project", "model"],
        )
        for project, model, (count, enqueued) in self._enqueued():
            batches.add_metric([project, model], count)
            tokens.add_metric([project, model], enqueued)
        yield batches
        yield tokens
