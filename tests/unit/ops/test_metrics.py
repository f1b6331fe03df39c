"""The service's metrics: all under ``llm_stream_`` beside vLLM's in the default registry, each
described; a role's own state read from it at scrape time, never bound at construction."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from llm_stream.ops import metrics


def test_every_metric_is_ours_by_name_and_described() -> None:
    found = [
        value for value in vars(metrics).values() if isinstance(value, Counter | Gauge | Histogram)
    ]
    assert len(found) > 20
    for metric in found:
        assert metric._name.startswith("llm_stream_"), metric._name
        assert metric._documentation.strip(), metric._name


def test_open_batch_gauges_read_the_role_when_scraped() -> None:
    state = {"open": 2, "oldest": 1.5}
    registry = CollectorRegistry()
    registry.register(metrics.OpenBatchGauges(lambda: state["open"], lambda: state["oldest"]))
    assert registry.get_sample_value("llm_stream_batches_open") == 2
    state.update(open=7, oldest=30.0)  # no update call: the next scrape reads it
    assert registry.get_sample_value("llm_stream_batches_open") == 7
    assert registry.get_sample_value("llm_stream_oldest_open_batch_age_seconds") == 30.0


def test_the_aggregators_state_sizes_are_a_gauge_per_piece_of_state() -> None:
    held = {"open": 1, "manifests": 3, "cancelling": 0, "finished": 12}
    registry = CollectorRegistry()
    registry.register(metrics.OpenBatchGauges(lambda: 1, lambda: 0.0, held=lambda: held))
    name = "llm_stream_aggregator_batches_held"
    assert registry.get_sample_value(name, {"state": "manifests"}) == 3
    held["finished"] = 40
    assert registry.get_sample_value(name, {"state": "finished"}) == 40
