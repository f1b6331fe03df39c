from __future__ import annotations

from llm_stream.aggregator.unserved import NOT_SERVED, UnservedModels, waiting_errors
from llm_stream.contracts import BatchManifest
from llm_stream.kafka.live_workers import LiveWorkers
from tests.unit.kafka.announcements import Clock, announcement


def _manifest(batch_id: str, *models: str) -> BatchManifest:
    return BatchManifest(
        batch_id=batch_id,
        endpoint="/v1/completions",
        request_count=1,
        model=models[0],
        models=list(models) if len(models) > 1 else None,
    )


def test_a_batch_waits_once_its_model_has_been_absent_long_enough() -> None:
    wall, monotonic = Clock(), Clock()
    live = LiveWorkers(wall)
    live.add([announcement("w", ["small"], 1000)])
    unserved = UnservedModels(live, report_after_s=60, clock=monotonic)
    batches = [_manifest("a", "small"), _manifest("b", "large"), _manifest("c", "small", "large")]
    assert unserved.waiting(batches) == {}  # large just went missing
    monotonic.now += 59
    assert unserved.waiting(batches) == {}
    monotonic.now += 1
    assert unserved.waiting(batches) == {"b": ["large"], "c": ["large"]}
    assert unserved.absent_for("large") == 60
    live.add([announcement("w2", ["large"], 1000)])  # back
    assert unserved.waiting(batches) == {}
    assert unserved.absent_for("large") == 0


def test_a_model_no_open_batch_names_is_not_tracked() -> None:
    monotonic = Clock()
    unserved = UnservedModels(LiveWorkers(Clock()), report_after_s=1, clock=monotonic)
    unserved.waiting([_manifest("a", "gone")])
    monotonic.now += 5
    assert unserved.waiting([]) == {}
    assert unserved.waiting([_manifest("a", "gone")]) == {}  # timed afresh
    assert unserved.absent_for("gone") == 0


def test_the_error_names_each_model_and_how_long_it_has_been_absent() -> None:
    errors = waiting_errors(["large", "org/x"], lambda model: 75.4)
    [error] = errors["data"]  # type: ignore[index]
    assert error["code"] == NOT_SERVED
    assert error["param"] == "model"
    assert "`large` (75 s), `org/x` (75 s)" in error["message"]
