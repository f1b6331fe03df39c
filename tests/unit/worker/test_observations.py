from __future__ import annotations

from prometheus_client import REGISTRY

from llm_stream.contracts import ResponseData
from llm_stream.protocols import IncomingRecord
from llm_stream.worker.observations import observe_answer


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_an_answer_is_counted_by_endpoint_and_status_with_its_tokens() -> None:
    record = IncomingRecord("requests", 0, 0, b"", timestamp_ms=None)
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    before = {
        "answered": _sample(
            "llm_stream_requests_answered_total", endpoint="obs", status_code="404"
        ),
        "failed": _sample("llm_stream_requests_failed_total", endpoint="obs", status_code="404"),
        "prompt": _sample("llm_stream_prompt_tokens_total", endpoint="obs"),
    }
    observe_answer(
        record, "obs", ResponseData(status_code=404, request_id="r", body={"usage": usage})
    )
    assert (
        _sample("llm_stream_requests_answered_total", endpoint="obs", status_code="404")
        == before["answered"] + 1
    )
    assert (
        _sample("llm_stream_requests_failed_total", endpoint="obs", status_code="404")
        == before["failed"] + 1
    )
    assert _sample("llm_stream_prompt_tokens_total", endpoint="obs") == before["prompt"] + 7
