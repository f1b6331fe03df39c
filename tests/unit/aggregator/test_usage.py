"""A batch object's ``usage`` and ``model``: summed from its result lines, each custom_id once,
moving while the batch runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from llm_stream.contracts import BatchManifest, ResponseData, ResultMessage
from llm_stream.protocols import IncomingRecord
from tests.fakes import FakeStatusPublisher
from tests.unit.aggregator.conftest import Make

TOPIC = "results"


def _result(custom_id: str, status: int = 200, **usage: Any) -> bytes:
    body: dict[str, Any] = {"model": "served-model"}
    if usage:
        body["usage"] = usage
    result = ResultMessage(
        batch_id="b1",
        id=f"batch_req_{custom_id}",
        custom_id=custom_id,
        response=ResponseData(status_code=status, request_id="r", body=body),
    )
    return result.model_dump_json().encode()


def _records(values: list[bytes], start: int = 0) -> list[IncomingRecord]:
    return [IncomingRecord(TOPIC, 0, start + i, value) for i, value in enumerate(values)]


def _manifest(count: int, model: str | None = None) -> BatchManifest:
    return BatchManifest(
        batch_id="b1", endpoint="/v1/chat/completions", request_count=count, model=model
    )


async def test_usage_is_summed_once_per_custom_id_and_moves_while_the_batch_runs(
    tmp_path: Path, make: Make
) -> None:
    import openai.types as openai_types  # a dependency: its absence is a failure, not a skip

    status = FakeStatusPublisher()
    aggregator = make(tmp_path, status, progress_interval=0)
    await aggregator.add_manifests([_manifest(3)])
    first = _result(
        "a",
        prompt_tokens=10,
        completion_tokens=4,
        total_tokens=14,
        prompt_tokens_details={"cached_tokens": 8},
        completion_tokens_details={"reasoning_tokens": 3},
    )
    await aggregator.add_results(_records([first, first]))  # a duplicate in the same poll
    progress = status.published[-1]
    assert progress.status == "in_progress"
    assert progress.usage.model_dump() == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 8},
        "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": 14,
    }
    redelivered = _result("a", prompt_tokens=99, completion_tokens=99)  # a second answer
    await aggregator.add_results(_records([redelivered, _result("b", 400)], start=2))
    assert status.published[-1].usage.total_tokens == 14  # a's first answer only; b had none
    await aggregator.add_results(
        _records([_result("c", prompt_tokens=1, completion_tokens=2, total_tokens=3)], start=4)
    )
    final = status.published[-1]
    assert final.status == "completed"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 6)
    assert final.usage.total_tokens == 17
    assert final.model == "served-model"  # the manifest named none: the answers' model
    for batch in status.published:
        openai_types.Batch.model_validate(batch.model_dump(mode="json"))
    written = orjson.loads((tmp_path / "b1" / "batch.json").read_bytes())
    assert written["usage"]["total_tokens"] == 17


async def test_the_manifests_model_names_the_batch(tmp_path: Path, make: Make) -> None:
    status = FakeStatusPublisher()
    aggregator = make(tmp_path, status)
    await aggregator.add_manifests([_manifest(1, model="asked-model")])
    await aggregator.add_results(_records([_result("a")]))
    assert status.published[-1].model == "asked-model"
    assert status.published[-1].usage.total_tokens == 0
