"""The exports read a batch from object storage as from a directory (a real S3 server on
loopback, moto's, in its own process)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import orjson
import pytest

from llm_stream.contracts import Judgement
from llm_stream.curation import finetune
from llm_stream.curation.export import export_batch
from llm_stream.files.opening import open_store
from llm_stream.files.s3 import S3FileStore
from llm_stream.settings import Settings
from tests.curation_support import custom_id, write_batch
from tests.s3_harness import new_bucket, s3_server

BATCH = "batch_on_s3"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with s3_server() as url:
        yield url


async def test_a_finetune_export_from_s3(endpoint: str) -> None:
    settings = Settings(storage_url=f"s3://{new_bucket(endpoint)}/data/", s3_endpoint_url=endpoint)
    store = open_store(settings)
    assert isinstance(store, S3FileStore)
    write_batch(store, BATCH, 6, errors=1)
    judged = Judgement(
        batch_id=BATCH, custom_id=custom_id(2), verdict="gold", corrected="Three.", judged_at=1
    )
    out = io.BytesIO()
    count = await export_batch(store, BATCH, [judged], "finetune", out)
    (example,) = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert count.written == 1
    assert finetune.problems(example) == []
    assert example["messages"][-1] == {"role": "assistant", "content": "Three."}
    assert count.verdicts == {"gold": 1, "unjudged": 6}
