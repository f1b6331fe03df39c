from __future__ import annotations

import io
import json
import os
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from llm_stream.curation.export import export_batch
from llm_stream.curation.label_studio_tasks import labelling_config
from llm_stream.curation.schemas import (
    SchemaNotFoundError,
    answer_problems,
    line_schema,
    load_schema,
    metadata_schema,
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


OTHER = {"type": "object", "required": ["score"]}
WRAPPED = {"type": "json_schema", "json_schema": {"name": "labels", "schema": SCHEMA}}


def test_the_requests_schema_wins_over_the_batchs_named_one(tmp_path: Path) -> None:
    (tmp_path / "scores.json").write_text(json.dumps(OTHER))
    assert line_schema({"response_format": WRAPPED}, "scores", tmp_path) == SCHEMA
    assert line_schema({"response_format": WRAPPED}, "unknown", tmp_path) == SCHEMA
    assert line_schema({"messages": []}, "scores", tmp_path) == OTHER
    assert line_schema(None, "scores", tmp_path) == OTHER
    assert line_schema({"messages": []}, None, tmp_path) is None


def test_an_edited_schema_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "scores.json"
    path.write_text(json.dumps(OTHER))
    assert line_schema(None, "scores", tmp_path) == OTHER
    path.write_text(json.dumps(SCHEMA))
    os.utime(path, ns=(1, path.stat().st_mtime_ns + 1_000_000_000))
    assert line_schema(None, "scores", tmp_path) == SCHEMA


def test_a_name_that_names_no_schema_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaNotFoundError, match="'missing'"):
        line_schema({"messages": []}, "missing", tmp_path)
    with pytest.raises(SchemaNotFoundError, match="LLM_STREAM_SCHEMAS_DIR"):
        line_schema(None, "scores", None)


def test_the_batch_metadata_names_its_schema() -> None:
    assert metadata_schema({"schema": "scores", "team": "x"}) == "scores"
    assert metadata_schema({"schema": "  "}) is None
    assert metadata_schema({"team": "x"}) is None
    assert metadata_schema(None) is None


def _write(
    store: LocalFileStore,
    answers: list[str],
    with_format: bool,
    metadata: dict[str, str] | None = None,
) -> None:
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
    store.write(BATCH, BatchFile.BATCH, [orjson.dumps({"metadata": metadata or {}}) + b"\n"])


@pytest.mark.parametrize("with_format", [True, False])
async def test_export_keeps_only_valid_lines(tmp_path: Path, with_format: bool) -> None:
    store = LocalFileStore(tmp_path / "store")
    (tmp_path / "labels.json").write_text(json.dumps(SCHEMA))
    _write(store, ['{"label": "spam"}', "not json", '{"label": "ham"}'], with_format)
    out = io.BytesIO()
    named = None if with_format else "labels"
    count = await export_batch(
        store,
        BATCH,
        [],
        "finetune",
        out,
        keep={"unjudged"},
        schema=named,
        schemas_dir=tmp_path,
        valid_only=True,
    )
    assert count.written == 2
    assert count.invalid == 1
    target = tmp_path / "rows.parquet"
    with target.open("wb") as file:
        await export_batch(store, BATCH, [], "parquet", file, schema=named, schemas_dir=tmp_path)
    problems = {r["custom_id"]: r["schema_problems"] for r in pq.read_table(target).to_pylist()}
    assert problems == {"c0": "", "c1": "the answer is not JSON", "c2": ""}


async def test_export_takes_the_schema_the_batch_metadata_names(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "store")
    (tmp_path / "labels.json").write_text(json.dumps(SCHEMA))
    _write(store, ['{"label": "spam"}', '{"label": 1}'], False, {"schema": "labels"})
    out = io.BytesIO()
    count = await export_batch(
        store, BATCH, [], "finetune", out, keep={"unjudged"}, schemas_dir=tmp_path, valid_only=True
    )
    assert (count.written, count.invalid) == (1, 1)
    assert b"spam" in out.getvalue()


async def test_export_of_a_batch_naming_an_unknown_schema_writes_nothing(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "store")
    _write(store, ['{"label": "spam"}'], False, {"schema": "nowhere"})
    out = io.BytesIO()
    with pytest.raises(SchemaNotFoundError, match="'nowhere'"):
        await export_batch(store, BATCH, [], "parquet", out, schemas_dir=tmp_path)
    assert out.getvalue() == b""


async def test_label_studio_tasks_say_whether_the_answer_validates(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "store")
    (tmp_path / "labels.json").write_text(json.dumps(SCHEMA))
    _write(store, ['{"label": "spam"}', "not json"], False, {"schema": "labels"})
    out = io.BytesIO()
    await export_batch(store, BATCH, [], "label-studio", out, schemas_dir=tmp_path)
    checks = {
        t["data"]["custom_id"]: t["data"]["schema_check"] for t in orjson.loads(out.getvalue())
    }
    assert checks == {"c0": "validates", "c1": "does not validate: the answer is not JSON"}
    assert 'value="$schema_check"' in labelling_config("/v1/chat/completions")


async def test_label_studio_tasks_of_lines_without_a_schema(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "store")
    _write(store, ["not json"], False)
    out = io.BytesIO()
    await export_batch(store, BATCH, [], "label-studio", out)
    assert orjson.loads(out.getvalue())[0]["data"]["schema_check"] == "no schema"
