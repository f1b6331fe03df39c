from __future__ import annotations

import io
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from llm_stream.contracts import Judgement
from llm_stream.curation import finetune
from llm_stream.curation.export import UNJUDGED, InvalidExampleError, export_batch
from llm_stream.curation.joined import MissingBatchFilesError
from llm_stream.curation.judgement_index import Forgotten
from llm_stream.files.store import LocalFileStore
from tests.curation_support import custom_id, write_batch

BATCH = "batch_cur1"


def judged(number: int, verdict: str, corrected: str | None = None, at: float = 1.0) -> Judgement:
    return Judgement(
        batch_id=BATCH,
        custom_id=custom_id(number),
        verdict=verdict,  # type: ignore[arg-type]
        corrected=corrected,
        judged_at=at,
    )


@pytest.fixture
def store(tmp_path: Path) -> LocalFileStore:
    store = LocalFileStore(tmp_path / "store")
    write_batch(store, BATCH, 10, errors=2)
    return store


async def test_finetune_keeps_passed_lines_with_the_correction(store: LocalFileStore) -> None:
    judgements = [
        judged(1, "rejected"),
        judged(1, "accepted", at=2.0),  # the later judgement of a line wins
        judged(2, "gold", corrected="Two plus one is three."),
        judged(3, "rejected"),
        judged(11, "accepted"),  # an error line: nothing to train on
    ]
    out = io.BytesIO()
    count = await export_batch(store, BATCH, judgements, "finetune", out)
    examples = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert count.written == 2
    assert all(finetune.problems(example) == [] for example in examples)
    answers = {e["messages"][1]["content"]: e["messages"][-1] for e in examples}
    assert answers["Question number 1: what is 1 + 1?"] == {
        "role": "assistant",
        "content": "It is 2.",
    }
    assert answers["Question number 2: what is 2 + 1?"]["content"] == "Two plus one is three."
    assert count.verdicts == {"accepted": 2, "gold": 1, "rejected": 1, UNJUDGED: 8}


async def test_finetune_of_every_line_and_unjudged_ones(store: LocalFileStore) -> None:
    out = io.BytesIO()
    count = await export_batch(
        store, BATCH, [], "finetune", out, keep={"accepted", "gold", UNJUDGED}
    )
    assert count.written == 10  # the two error lines have no answer
    assert count.skipped == 2


async def test_a_tombstone_deletes_a_lines_judgement(store: LocalFileStore) -> None:
    judgements = [
        judged(1, "gold"),
        Forgotten(BATCH, custom_id(1)),  # its batch retired: the judgement is gone
        judged(2, "gold"),
        Forgotten(BATCH, custom_id(2)),
        judged(2, "accepted", at=0.5),  # judged again after the tombstone: kept
    ]
    out = io.BytesIO()
    count = await export_batch(store, BATCH, judgements, "finetune", out)
    assert count.written == 1
    assert count.verdicts == {"accepted": 1, UNJUDGED: 11}


async def test_label_studio_tasks_keep_custom_ids(store: LocalFileStore) -> None:
    out = io.BytesIO()
    count = await export_batch(store, BATCH, [judged(4, "gold")], "label-studio", out)
    tasks = orjson.loads(out.getvalue())
    assert count.written == len(tasks) == 12
    first = tasks[0]["data"]
    assert first["custom_id"] == custom_id(9)
    assert first["batch_id"] == BATCH
    assert first["dialogue"][1] == {"role": "user", "content": "Question number 9: what is 9 + 1?"}
    assert first["answer"] == "It is 10."


async def test_parquet_has_a_row_per_line_with_usage_and_judgement(
    store: LocalFileStore, tmp_path: Path
) -> None:
    target = tmp_path / "out.parquet"
    with target.open("wb") as out:
        await export_batch(store, BATCH, [judged(5, "rejected")], "parquet", out)
    rows = {row["custom_id"]: row for row in pq.read_table(target).to_pylist()}
    assert len(rows) == 12
    assert rows[custom_id(5)]["verdict"] == "rejected"
    assert rows[custom_id(5)]["total_tokens"] == 25
    assert rows[custom_id(5)]["answer"] == "It is 6."
    assert orjson.loads(rows[custom_id(5)]["request"])["model"] == "tiny-llama"
    assert rows[custom_id(10)]["status_code"] is None
    assert orjson.loads(rows[custom_id(10)]["error"])["code"] == "invalid_request"


async def test_an_invalid_correction_is_refused_not_written(store: LocalFileStore) -> None:
    out = io.BytesIO()
    with pytest.raises(InvalidExampleError, match="empty content"):
        await export_batch(store, BATCH, [judged(1, "accepted", corrected="  ")], "finetune", out)


async def test_a_batch_without_its_upload_needs_the_input_file(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "store")
    with pytest.raises(MissingBatchFilesError, match="--input"):
        await export_batch(store, "batch_none", [], "finetune", io.BytesIO())
