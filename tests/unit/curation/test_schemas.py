from __future__ import annotations

import io
import json
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from llm_stream.curation.export import export_batch
from llm_stream.curation.schemas import (
    SchemaNotFoundError,
    answer_problems,
    load_schema,
    requested_schema,
)
from llm_stream.files.records import new_upload_id
from llm_stream.files.store import BatchFile, LocalFileStore

SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["spam", "ham"]}},
    "required": ["label"],
}
BATCH = "batch_schema"


def test_a_named_schema_is_read_and_checked(tmp_path: Path) -> None:
    (tmp_path / "labels.json").write_text(json.dumps(SCHEMA))
    (tmp_path / "broken.json").write_text(json.dumps({"type": 5}))
    assert load_schema(tmp_path, "labels") == SCHEMA
    with pytest.raises(SchemaNotFoundError):
        load_schema(tmp_path, "broken")
    with pytest.raises(SchemaNotFoundError):
        load_schema(tmp_path, "../etc/passwd")
    with pytest.raises(SchemaNotFoundError):
        load_schema(None, "labels")


def test_answers_that_break_the_schema() -> None:
    assert answer_problems(SCHEMA, '{"label": "spam"}') == []
    assert answer_problems(SCHEMA, "spam") == ["the answer is not JSON"]
    assert answer_problems(SCHEMA, '{"label": "eggs"}') == [
        "label: 'eggs' is not one of ['spam', 'ham']"
    ]
    assert answer_problems(SCHEMA, None) == ["no answer"]


def test_the_requests_response_format_names_its_schema() -> None:
    wrapped = {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}}
    assert requested_schema({"response_format": wrapped}) == SCHEMA
    assert requested_schema({"response_format": {"type": "json_object"}}) is None
    assert requested_schema(None) is None


def _write(store: LocalFileStore, answers: list[str], with_format: bool) -> None:
    requests, outputs = [], []
    for number, answer in enumerate(answers):
        body: dict[str, object] = {"model": "m", "messages": [{"role": "user", "content": "?"}]}
        if with_format:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "labels", "schema": SCHEMA},
            }
        line = {"custom_id": f"c{number}", "method": "POST", "url": "/v1/chat/completions"}
        requests.append(orjson.dumps({**line, "body": body}) + b"\n")
        choice = {"index": 0, "message": {"role": "assistant", "content": answer}}
        response = {"status_code": 200, "body": {"choices": [choice]}}
        outputs.append(orjson.dumps({"custom_id": f"c{number}", "response": response}) + b"\n")
    upload = new_upload_id()
    store.write_upload(upload, requests, filename="in.jsonl", created_at=1)
    store.link_input(BATCH, upload)
    store.write(BATCH, BatchFile.OUTPUT, outputs)
    store.write(BATCH, BatchFile.BATCH, [b"{}\n"])


@pytest.mark.parametrize("with_format", [True, False])
async def test_export_keeps_only_valid_lines(tmp_path: Path, with_format: bool) -> None:
    store = LocalFileStore(tmp_path / "store")
    _write(store, ['{"label": "spam"}', "not json", '{"label": "ham"}'], with_format)
    out = io.BytesIO()
    named = None if with_format else SCHEMA
    count = await export_batch(
        store, BATCH, [], "finetune", out, keep={"unjudged"}, schema=named, valid_only=True
    )
    assert count.written == 2
    assert count.invalid == 1
    target = tmp_path / "rows.parquet"
    with target.open("wb") as file:
        await export_batch(store, BATCH, [], "parquet", file, schema=named)
    problems = {r["custom_id"]: r["schema_problems"] for r in pq.read_table(target).to_pylist()}
    assert problems == {"c0": "", "c1": "the answer is not JSON", "c2": ""}
