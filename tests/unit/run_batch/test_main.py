from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson

from llm_stream.batch import request_line
from llm_stream.batch.error_bodies import endpoint_not_served, unsupported_endpoint
from llm_stream.contracts import ResponseData
from llm_stream.files.store import ERROR_FILE, OUTPUT_FILE
from llm_stream.run_batch.main import (
    as_input_line,
    classify_lines,
    local_error_line,
    merge_in_input_order,
    pipeline_id,
)


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
        {"custom_id": "a", "url": "/v1/completions", "body": {}},  # answered, as vLLM does
    ]
    errors = _errors(classified)
    assert set(errors) == {2, 5, 6, 7}
    assert errors[2]["response"]["body"]["error"]["message"].startswith("line 2: not valid JSON")
    assert errors[5]["custom_id"] is None
    assert "line 5: custom_id must be" in errors[5]["response"]["body"]["error"]["message"]
    assert [errors[n]["response"]["status_code"] for n in (2, 5, 6, 7)] == [400, 400, 400, 400]
    # Answered as vLLM's run-batch answers a URL it does not serve: 400.
    assert errors[6]["custom_id"] == "c"
    assert errors[6]["response"]["body"]["error"]["message"].startswith("URL /x was used.")
    assert "body must be a JSON object" in errors[7]["response"]["body"]["error"]["message"]


def test_any_url_ending_in_score_or_rerank_goes_to_that_api(tmp_path: Path) -> None:
    """vLLM's run-batch matches them by their last segment; other URLs stay as written."""
    urls = ["/score", "/v1/score", "/any/score", "/x/rerank", "/v2/rerank", "/v1/scores"]
    lines = [orjson.dumps({"custom_id": str(n), "url": u, "body": {}}) for n, u in enumerate(urls)]
    classified = list(classify_lines(_write(tmp_path, lines)))
    served = [request["url"] if request else None for _, request, _ in classified]
    assert served == ["/score", "/v1/score", "/score", "/rerank", "/v2/rerank", None]


def test_vllms_invalid_input_is_answered_instead_of_stopping_the_run(tmp_path: Path) -> None:
    """vLLM's run-batch exits on a line with no custom_id; this one answers it 400 and serves
    the rest."""
    chat = {"url": "/v1/chat/completions", "method": "POST", "body": {"model": "m"}}
    lines = [
        orjson.dumps({"invalid_field": "r1", **chat}),
        orjson.dumps({"custom_id": "r2", **chat}),
    ]
    classified = list(classify_lines(_write(tmp_path, lines)))
    assert [request for _, request, _ in classified] == [None, {"custom_id": "r2", **chat}]
    error = _errors(classified)[1]
    assert (error["custom_id"], error["response"]["status_code"]) == (None, 400)


def test_an_endpoint_the_model_does_not_serve_is_vllm_run_batchs_400() -> None:
    request = {"custom_id": "same", "url": "/v1/embeddings", "body": {}}
    found = local_error_line("line-3", endpoint_not_served("/v1/embeddings"))
    line = orjson.loads(as_input_line(found, request))
    assert line["custom_id"] == "same"
    assert line["response"]["status_code"] == 400
    message = line["response"]["body"]["error"]["message"]
    assert message == "Model does not support endpoint: /v1/embeddings"
    answered = local_error_line("line-4", _ok())
    assert orjson.loads(as_input_line(answered, request))["response"]["status_code"] == 200


def _ok() -> ResponseData:
    return ResponseData(status_code=200, request_id="r", body={"object": "list", "data": []})


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
    """Lines travel under their line numbers; each comes back under its own custom_id, a
    repeated id included."""
    source = _write_input(tmp_path)
    batch_dir = tmp_path / "batch"
    batch_dir.mkdir()
    output = [{"custom_id": pipeline_id(n), "n": n} for n in (1, 4)]
    (batch_dir / OUTPUT_FILE).write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in output))
    (batch_dir / ERROR_FILE).write_bytes(orjson.dumps({"custom_id": "line-3", "n": 3}) + b"\n")
    target = tmp_path / "out.jsonl"
    assert merge_in_input_order(source, batch_dir, target) == 7
    lines = [orjson.loads(line) for line in target.read_bytes().splitlines()]
    assert [line["custom_id"] for line in lines] == ["a", "", "b", "a", "", "c", "d"]
    assert [lines[n]["n"] for n in (0, 2, 3)] == [1, 3, 4]
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
