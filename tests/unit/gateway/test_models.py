"""The gateway's bodies are OpenAI's, field for field: ``openai.types`` parses what it answers,
and a batch created here names the upload it came from."""

from __future__ import annotations

import openai.types
import pydantic
import pytest

from llm_stream.batch.objects import batch_object
from llm_stream.batch.status import BatchStatus
from llm_stream.contracts import BatchManifest
from llm_stream.files.records import StoredFile
from llm_stream.gateway.models import Batch, BatchCreate, FileObject, ListPage


def test_a_stored_files_record_is_an_openai_file_object() -> None:
    record = StoredFile(
        id="file-1", bytes=15, created_at=1_700_000_000, filename="in.jsonl", purpose="batch"
    )
    shown = FileObject.of(record).model_dump(mode="json")
    parsed = openai.types.FileObject.model_validate(shown)
    assert (parsed.id, parsed.bytes, parsed.filename, parsed.purpose) == (
        "file-1",
        15,
        "in.jsonl",
        "batch",
    )
    assert (parsed.object, parsed.status) == ("file", "processed")


def test_a_batch_from_the_status_topic_gets_the_upload_it_came_from() -> None:
    manifest = BatchManifest(batch_id="b1", request_count=2, endpoint="/v1/completions")
    batch = Batch.of(batch_object(manifest, BatchStatus.VALIDATING), "file-upload")
    parsed = openai.types.Batch.model_validate(batch.model_dump(mode="json"))
    assert (parsed.id, parsed.input_file_id, parsed.status) == ("b1", "file-upload", "validating")
    assert parsed.request_counts is not None
    assert parsed.request_counts.total == 2


def test_a_batch_create_refuses_parameters_openai_does_not_have() -> None:
    fields = {"input_file_id": "file-1", "endpoint": "/v1/completions", "completion_window": "24h"}
    assert BatchCreate.model_validate(fields).metadata is None
    with pytest.raises(pydantic.ValidationError, match="priority"):
        BatchCreate.model_validate({**fields, "priority": 1})
    with pytest.raises(pydantic.ValidationError, match="completion_window"):
        BatchCreate.model_validate({**fields, "completion_window": "tomorrow"})


def test_an_empty_list_page_is_openais_with_nothing_more() -> None:
    page = ListPage[FileObject](data=[])
    assert page.model_dump() == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
