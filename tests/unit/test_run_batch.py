from __future__ import annotations

from pathlib import Path

import orjson

from service.aggregator import ERROR_FILE, OUTPUT_FILE
from service.run_batch import classify_lines, merge_in_input_order


def _write_input(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    lines = [
        orjson.dumps({"custom_id": "a", "url": "/v1/completions", "body": {}, "extra": 1}),
        b"not json",
        orjson.dumps({"custom_id": "b", "method": "POST", "url": "/x", "body": {}}),
        orjson.dumps({"custom_id": "a", "url": "/v1/completions", "body": {}}),
        orjson.dumps({"url": "/v1/completions"}),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_lines_vllm_would_crash_on_become_local_errors(tmp_path: Path) -> None:
    classified = list(classify_lines(_write_input(tmp_path)))
    submittable = [request for _, request, _ in classified if request is not None]
    assert submittable == [
        {"custom_id": "a", "url": "/v1/completions", "body": {}},  # unknown keys dropped
        {"custom_id": "b", "method": "POST", "url": "/x", "body": {}},
    ]
    errors = {number: orjson.loads(line) for number, _, line in classified if line is not None}
    assert set(errors) == {2, 4, 5}
    assert "not valid JSON" in errors[2]["response"]["body"]["error"]["message"]
    assert errors[4]["custom_id"] == "a"
    assert "duplicate" in errors[4]["response"]["body"]["error"]["message"]
    assert errors[5]["custom_id"] is None
    assert all(e["response"]["status_code"] == 400 for e in errors.values())


def test_merge_writes_one_line_per_input_line_in_input_order(tmp_path: Path) -> None:
    source = _write_input(tmp_path)
    batch_dir = tmp_path / "batch"
    batch_dir.mkdir()
    (batch_dir / OUTPUT_FILE).write_bytes(orjson.dumps({"custom_id": "a", "n": 1}) + b"\n")
    (batch_dir / ERROR_FILE).write_bytes(orjson.dumps({"custom_id": "b", "n": 2}) + b"\n")
    target = tmp_path / "out.jsonl"
    assert merge_in_input_order(source, batch_dir, target) == 5
    lines = [orjson.loads(line) for line in target.read_bytes().splitlines()]
    assert [line["custom_id"] for line in lines] == ["a", None, "b", "a", None]
    assert lines[0]["n"] == 1
    assert lines[2]["n"] == 2
    assert not (batch_dir / "index.db").exists()
