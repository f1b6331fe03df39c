"""What the status index counts against a project's quotas: an unfinished batch's estimated
input tokens per model, from its manifest, until a batch object says it ended, whatever order
the two topics' records arrive in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from llm_stream.client.status_index import Enqueued, Record, StatusIndex, enqueued_tokens


def _manifest(batch_id: str, **fields: Any) -> bytes:
    base = {"batch_id": batch_id, "endpoint": "/v1/chat/completions", "request_count": 1}
    return orjson.dumps({**base, "created_at": 10, "model": "small", **fields})


def _object(batch_id: str, status: str, project: str | None = None) -> bytes:
    found = {"id": batch_id, "created_at": 10, "status": status}
    return orjson.dumps(found if project is None else {**found, "project": project})


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[StatusIndex]:
    opened = StatusIndex(tmp_path)
    yield opened
    opened.close()


async def test_an_unfinished_batch_counts_its_tokens_until_it_ends(index: StatusIndex) -> None:
    tokens = {"small": 120}
    await index.apply([Record(False, "a", _manifest("a", project="ads", input_tokens=tokens))])
    assert index.enqueued("ads", "small") == Enqueued(1, 120)
    await index.apply([Record(True, "a", _object("a", "in_progress", "ads"))])
    await index.apply([Record(True, "a", _object("a", "cancelling", "ads"))])
    assert index.enqueued("ads", "small") == Enqueued(1, 120)  # still queued work
    await index.apply([Record(True, "a", _object("a", "cancelled", "ads"))])
    assert index.enqueued("ads", "small") == Enqueued(0, 0)


async def test_a_status_that_ended_before_its_manifest_was_read_counts_nothing(
    index: StatusIndex,
) -> None:
    await index.apply([Record(True, "a", _object("a", "completed"))])
    await index.apply([Record(False, "a", _manifest("a", input_tokens={"small": 5}))])
    assert index.enqueued("default", "small") == Enqueued(0, 0)


async def test_projects_and_models_are_counted_apart(index: StatusIndex) -> None:
    mixed = {"models": ["small", "large"], "input_tokens": {"small": 10, "large": 30}}
    await index.apply(
        [
            Record(False, "a", _manifest("a", project="ads", **mixed)),
            Record(False, "b", _manifest("b", project="ads", input_tokens={"small": 7})),
            Record(False, "c", _manifest("c", project="search", input_tokens={"small": 100})),
            Record(False, "d", _manifest("d")),  # counted by no producer: a batch, 0 tokens
        ]
    )
    assert index.enqueued("ads", "small") == Enqueued(2, 17)
    assert index.enqueued("ads", "large") == Enqueued(1, 30)
    assert index.enqueued("search", "small") == Enqueued(1, 100)
    assert index.enqueued("default", "small") == Enqueued(1, 0)
    assert index.enqueued_by_project() == [
        ("ads", "large", Enqueued(1, 30)),
        ("ads", "small", Enqueued(2, 17)),
        ("default", "small", Enqueued(1, 0)),
        ("search", "small", Enqueued(1, 100)),
    ]


async def test_a_tombstoned_manifest_counts_no_more(index: StatusIndex) -> None:
    await index.apply([Record(False, "a", _manifest("a", input_tokens={"small": 9}))])
    await index.apply([Record(False, "a", None)])
    assert index.enqueued("default", "small") == Enqueued(0, 0)
    assert index.enqueued_by_project() == []


@pytest.mark.parametrize(
    "manifest",
    [
        b"not json",
        b"[1, 2]",
        orjson.dumps({"model": 5, "input_tokens": {"small": "many"}}),
        orjson.dumps({"model": "small", "input_tokens": {"small": True}}),
        orjson.dumps({"model": "small", "input_tokens": {"small": -4}}),
        orjson.dumps({"models": "small"}),
    ],
)
def test_a_record_that_is_no_manifest_counts_no_tokens(manifest: bytes) -> None:
    assert sum(enqueued_tokens(manifest, None).values()) == 0
