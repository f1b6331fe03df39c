"""An upload's id and record: an id that never reads as a batch file's or a path, and the facts
an OpenAI file object shows, checked when read back."""

from __future__ import annotations

import pydantic
import pytest

from llm_stream.files.records import StoredFile, is_upload_id, new_upload_id
from llm_stream.files.store import BatchFile, file_id


def test_upload_ids_never_read_as_batch_file_ids_or_paths() -> None:
    upload_id = new_upload_id()
    assert is_upload_id(upload_id)
    assert not is_upload_id(file_id("b1", BatchFile.OUTPUT))
    for value in ("file-../../x", "file-ABC", f"{upload_id}/x", f"{upload_id}.json"):
        assert not is_upload_id(value)


def test_every_new_upload_id_is_its_own() -> None:
    assert len({new_upload_id() for _ in range(1000)}) == 1000


def _record(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "file-1",
        "bytes": 10,
        "created_at": 1_700_000_000,
        "filename": "in.jsonl",
        "purpose": "batch",
    }
    return {**base, **fields}


def test_a_record_reads_back_as_written() -> None:
    record = StoredFile.model_validate(_record(purpose="batch_output"))
    assert StoredFile.model_validate_json(record.model_dump_json()) == record


@pytest.mark.parametrize(
    "fields",
    [{"bytes": -1}, {"created_at": -1}, {"purpose": "fine-tune"}, {"filename": None}],
    ids=["negative size", "negative time", "another purpose", "no filename"],
)
def test_a_record_that_no_file_could_have_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        StoredFile.model_validate(_record(**fields))


def test_a_record_is_frozen() -> None:
    record = StoredFile.model_validate(_record())
    with pytest.raises(pydantic.ValidationError):
        record.bytes = 11  # type: ignore[misc]
