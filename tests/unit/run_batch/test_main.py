from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson

from llm_stream.batch import request_line
from llm_stream.batch.error_bodies import unsupported_endpoint
from llm_stream.files.store import ERROR_FILE, OUTPUT_FILE
from llm_stream.run_batch.main import classify_lines, local_error_line, merge_in_input_order


def _write(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _write_input(tmp_path: Path) -> Path:
    return _write(
        tmp_path,
        [
            orjson.dumps({"custom_id": "a", "url": "/v1/completions", "body": {}, "extra": 1}),
            b"not json",
            orjson.dumps({"custom_id": "b", "method": "POST", "url": "/v1/embeddings", "body": {}}),
            orjson.dumps({"custom_id": "a", "url": "/v1/completions", "body": {}}),
            orjson.dumps({"url": "/v1/completions"}),
            orjson.dumps({"custom_id": "c", "url": "/x", "body": {}}),
            orjson.dumps({"custom_id": "d", "url": "/v1/completions", "body": "text"}),
        ],
    )


def _errors(classified: list[Any]) -> dict[int, dict[str, Any]]:
    return {number: orjson.loads(line) for number, _, line in classified if line is not None}


def test_lines_the_rules_refuse_become_local_errors(tmp_path: Path) -> None:
    classified = list(classify_lines(_write_input(tmp_path)))
    submittable = [request for _, request, _ in classified if request is not None]
    assert submittable == [
        {"custom_id": "a", "url": "/v1/completions", "body": {}},  # unknown keys dropped
        {"custom_id": "b", "method": "POST", "url": "/v1/embeddings", "body": {}},
    ]
    errors = _errors(classified)
    assert set(errors) == {2, 4, 5, 6, 7}
    assert errors[2]["response"]["body"]["error"]["message"].startswith("line 2: not valid JSON")
    assert errors[4]["custom_id"] == "a"
    assert "line 4: duplicate custom_id 'a'" in errors[4]["response"]["body"]["error"]["message"]
    assert errors[5]["custom_id"] is None
    assert "line 5: custom_id must be" in errors[5]["response"]["body"]["error"]["message"]
    assert [errors[n]["response"]["status_code"] for n in (2, 4, 5, 6, 7)] == [
        400,
        400,
        400,
        400,
        400,
    ]
    # Answered as vLLM's run-batch answers a URL it does not serve: 400.
    assert errors[6]["custom_id"] == "c"
    assert errors[6]["response"]["body"]["error"]["message"].startswith("URL /x was used.")
    assert "body must be a JSON object" in errors[7]["response"]["body"]["error"]["message"]


def test_a_line_over_the_limit_is_answered_413_under_its_custom_id(tmp_path: Path) -> None:
    big = {"custom_id": "big", "url": "/v1/completions", "body": {"prompt": "x" * 3000}}
    path = _write(
        tmp_path, [orjson.dumps(big), orjson.dumps({**big, "custom_id": "ok", "body": {}})]
    )
    classified = list(classify_lines(path, batch_id="b1", max_bytes=2048))
    assert [request and request["custom_id"] for _, request, _ in classified] == [None, "ok"]
    error = _errors(classified)[1]
    assert error["custom_id"] == "big"
    assert error["response"]["status_code"] == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    size = len(orjson.dumps({**big, "batch_id": "b1"}))
    assert f"{size} bytes" in error["response"]["body"]["error"]["message"]


def test_the_default_limit_sizes_records_for_the_longest_batch_id(tmp_path: Path) -> None:
    line = {"custom_id": "a", "url": "/v1/completions", "body": {"prompt": ""}}
    record = {**line, "batch_id": request_line.LONGEST_BATCH_ID}
    pad = request_line.DEFAULT_MAX_RECORD_BYTES - len(orjson.dumps(record))
    fits = {**line, "body": {"prompt": "x" * pad}}
    over = {**line, "custom_id": "b", "body": {"prompt": "x" * (pad + 1)}}
    classified = list(classify_lines(_write(tmp_path, [orjson.dumps(fits), orjson.dumps(over)])))
    assert classified[0][1] is not None
    assert classified[1][1] is None


def test_local_error_lines_have_the_output_line_shape() -> None:
    line = orjson.loads(local_error_line("x", unsupported_endpoint("/y")))
    assert set(line) == {"id", "custom_id", "response", "error"}
    assert line["id"].startswith("batch_req_")
    assert line["response"]["request_id"].startswith("req_")
    assert line["response"]["status_code"] == 404


def test_merge_writes_one_line_per_input_line_in_input_order(tmp_path: Path) -> None:
    source = _write_input(tmp_path)
    batch_dir = tmp_path / "batch"
    batch_dir.mkdir()
    (batch_dir / OUTPUT_FILE).write_bytes(orjson.dumps({"custom_id": "a", "n": 1}) + b"\n")
    (batch_dir / ERROR_FILE).write_bytes(orjson.dumps({"custom_id": "b", "n": 2}) + b"\n")
    target = tmp_path / "out.jsonl"
    assert merge_in_input_order(source, batch_dir, target) == 7
    lines = [orjson.loads(line) for line in target.read_bytes().splitlines()]
    assert [line["custom_id"] for line in lines] == ["a", "", "b", "a", "", "c", "d"]
    assert lines[0]["n"] == 1
    assert lines[2]["n"] == 2
    assert not (batch_dir / "index.db").exists()


def test_a_line_too_long_to_read_is_answered_413_by_its_number(tmp_path: Path) -> None:
    """Its custom_id is never read (the line is skipped, not parsed): the answer names the
    line, as for a line that is not JSON, and the lines after it keep their numbers."""
    huge = {"custom_id": "huge", "url": "/v1/completions", "body": {"prompt": "x" * 5000}}
    ok = {"custom_id": "ok", "url": "/v1/completions", "body": {}}
    path = _write(tmp_path, [orjson.dumps(huge), orjson.dumps(ok)])
    classified = list(classify_lines(path, max_line_bytes=2048))
    assert [(number, request) for number, request, _ in classified] == [(1, None), (2, ok)]
    error = _errors(classified)[1]
    assert error["custom_id"] is None
    assert error["response"]["status_code"] == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    size = len(orjson.dumps(huge))
    assert error["response"]["body"]["error"]["message"] == (
        f"line 1: the line is {size} bytes, over the 2048-byte limit of a request line "
        "(batch_max_line_bytes)"
    )
