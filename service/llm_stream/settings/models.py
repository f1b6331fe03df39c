"""Several models behind one stream: how requests reach the workers of their model, and how
workers say what they serve."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ModelRoutingSettings(BaseModel):
    """Read by every role: producers route by them, workers announce by them, the gateway and
    the aggregator judge batches by what is announced."""

    route_by_model: bool = Field(
        False,
        description="A requests topic per model (<requests_topic>.<model>), read by the worker "
        "group that serves it; submit, the gateway and the client send each line to its "
        "model's topic and refuse a model no live worker serves. Off: one requests topic that "
        "every worker reads (one model per deployment).",
    )
    workers_topic: str = Field(
        "llm-stream.workers",
        description="Live workers and the models they serve, keyed by worker (compacted; "
        "heartbeats; a tombstone when a worker stops).",
    )
    worker_heartbeat_interval_s: float = Field(
        5.0, gt=0, description="How often a worker announces itself on the workers topic."
    )
    worker_expiry_s: float = Field(
        20.0,
        gt=0,
        description="A worker not heard from for this long no longer counts as serving its "
        "models (hosts' clocks must agree to well within it: NTP).",
    )
    batch_allow_mixed_models: bool = Field(
        False,
        description="Accept a batch whose lines name several models (OpenAI refuses them): "
        "with route_by_model each line goes to its model's workers and the aggregator joins "
        "the answers into one batch.",
    )
    unserved_model_report_s: float = Field(
        60.0,
        gt=0,
        description="With route_by_model, an open batch whose model has had no live worker "
        "this long is reported (log, gauge, and an error on the batch object) until one "
        "comes back.",
    )
