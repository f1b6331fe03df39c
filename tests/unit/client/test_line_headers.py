from __future__ import annotations

from llm_stream.batch.deadlines import deadline_of
from llm_stream.batch.priority import priority_of
from llm_stream.client.batch_client import BatchClient
from llm_stream.client.manifests import build_manifest
from llm_stream.client.publishing import batch_line_headers
from llm_stream.contracts import PRIORITY_HEADER
from tests.unit.client.fakes import CONFIG, FakeProducer, line


def _read(headers: list[tuple[str, bytes]]) -> dict[str, str]:
    return {name: value.decode() for name, value in headers}


def test_every_line_carries_the_end_of_the_window_and_the_metadatas_priority() -> None:
    manifest = build_manifest(
        "b1",
        endpoint="/v1/completions",
        request_count=1,
        completion_window="1h",
        metadata={PRIORITY_HEADER: "-2", "team": "x"},
    )
    headers = _read(batch_line_headers(manifest))
    assert deadline_of(headers) == manifest.created_at + 3600
    assert priority_of(headers) == -2


def test_a_batch_without_priority_carries_only_its_deadline() -> None:
    manifest = build_manifest(
        "b1",
        endpoint="/v1/completions",
        request_count=1,
        completion_window="7d",
        max_completion_window_s=7 * 86400,
    )
    headers = _read(batch_line_headers(manifest))
    assert priority_of(headers) is None
    assert deadline_of(headers) == manifest.created_at + 7 * 86400


async def test_submit_keeps_the_priority_in_the_metadata_and_on_every_line(
    producer: FakeProducer,
) -> None:
    async with BatchClient(CONFIG) as client:
        await client.submit(
            [line("a"), line("b")],
            batch_id="b1",
            endpoint="/v1/completions",
            metadata={"team": "search"},
            completion_window="1h",
            priority=-3,
        )
    manifest, *lines = producer.sent
    assert manifest.value["metadata"] == {"team": "search", PRIORITY_HEADER: "-3"}
    for sent in lines:
        headers = _read(sent.headers)
        assert priority_of(headers) == -3
        assert deadline_of(headers) == manifest.value["created_at"] + 3600
