"""The one rule set for a request line, and the four callers that must agree on it."""

from __future__ import annotations

import json
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson
import pydantic
import pytest

from llm_stream.batch import request_line
from llm_stream.batch.error_bodies import (
    describe,
    method_not_allowed,
    streaming_refused,
    unsupported_endpoint,
)
from llm_stream.batch.input_file import validate_batch_file
from llm_stream.batch.request_line import MISSING, Problem, Stage
from llm_stream.contracts import SUPPORTED_ENDPOINTS, CustomId, is_safe_batch_id
from llm_stream.run_batch.main import classify_lines
from llm_stream.settings import Settings
from llm_stream.worker.request_parsing import DeadLetter, InvalidRequest, parse_record

LIMIT = 2048
BATCH_ID = "b1"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _line(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "custom_id": "c1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": CHAT,
    }
    return {k: v for k, v in {**base, **fields}.items() if v is not MISSING}


def _deep(levels: int) -> object:
    value: object = "x"
    for _ in range(levels):
        value = [value]
    return value


# --- the rules, one by one --------------------------------------------------------------------


def test_the_limits_agree_with_the_contracts_and_settings() -> None:
    adapter: pydantic.TypeAdapter[str] = pydantic.TypeAdapter(CustomId)
    adapter.validate_python("c" * request_line.MAX_CUSTOM_ID_CHARS)
    with pytest.raises(pydantic.ValidationError):
        adapter.validate_python("c" * (request_line.MAX_CUSTOM_ID_CHARS + 1))
    assert is_safe_batch_id(request_line.LONGEST_BATCH_ID)
    assert not is_safe_batch_id(request_line.LONGEST_BATCH_ID + "b")
    assert Settings().max_message_bytes == request_line.DEFAULT_MAX_RECORD_BYTES == 1_048_576


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a": 1}', {"a": 1}),
        (b"{}", {}),
        (b' {"a": [1, 2.5, null]} \n', {"a": [1, 2.5, None]}),
    ],
)
def test_decode_reads_json_objects(raw: bytes, expected: dict[str, Any]) -> None:
    assert request_line.decode(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{oops", "not valid JSON"),
        (b"\xff{}", "not valid JSON"),
        (b'{"t": NaN}', "not valid JSON"),
        (b"[" * 1100 + b"]" * 1100, "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[]", "not a JSON object but an array"),
        (b"1", "not a JSON object but a number"),
        (b"true", "not a JSON object but a boolean"),
        (b'"s"', "not a JSON object but a string"),
        (b"null", "not a JSON object but null"),
    ],
)
def test_decode_refuses_what_is_not_a_json_object(raw: bytes, message: str) -> None:
    problem = request_line.decode(raw)
    assert isinstance(problem, Problem)
    assert problem.stage is Stage.ATTRIBUTION
    assert problem.message.startswith(message)


@pytest.mark.parametrize("value", ["c", "c" * 512, "ünï cödé ✓", " "])
def test_custom_ids_allowed(value: str) -> None:
    assert request_line.custom_id_problem(value) is None


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("", "''"),
        ("c" * 513, "(513 chars)"),
        (None, "None"),
        (7, "7"),
        (["c"], "['c']"),
        (MISSING, "nothing"),
    ],
)
def test_custom_ids_refused(value: object, shown: str) -> None:
    problem = request_line.custom_id_problem(value)
    assert problem is not None
    assert problem.stage is Stage.ATTRIBUTION
    assert problem.message.startswith("custom_id must be a string of 1 to 512 characters, not ")
    assert shown in problem.message


@pytest.mark.parametrize("value", ["b", "B-1_x", "0", "b" * 128])
def test_batch_ids_allowed(value: str) -> None:
    assert request_line.batch_id_problem(value) is None


@pytest.mark.parametrize("value", ["", "_b", "-b", "a.b", "../x", "a/b", "b" * 129, None, 5])
def test_batch_ids_refused(value: object) -> None:
    problem = request_line.batch_id_problem(value)
    assert problem is not None
    assert problem.stage is Stage.ATTRIBUTION
    assert problem.message.startswith(f"unsafe batch_id {describe(value)}: use 1 to 128")


def test_the_size_limit_counts_the_published_record_and_is_inclusive() -> None:
    record = {**_line(), "batch_id": BATCH_ID}
    size = len(orjson.dumps(record))
    assert request_line.size_problem(record, size) is None
    problem = request_line.size_problem(record, size - 1)
    assert problem is not None
    assert problem.stage is Stage.SIZE
    assert problem.response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert f"is {size} bytes, over the {size - 1}-byte limit" in problem.message


def test_a_record_too_deep_to_publish_is_a_shape_problem() -> None:
    assert request_line.size_problem({"body": _deep(250)}, LIMIT) is None
    problem = request_line.size_problem({"body": _deep(300)}, LIMIT)
    assert problem is not None
    assert problem.stage is Stage.SHAPE
    assert problem.response.status_code == HTTPStatus.BAD_REQUEST


def test_well_shaped_lines_have_no_shape_problems() -> None:
    assert request_line.shape_problems(_line(), request_line.LINE_FIELDS) == []
    assert request_line.shape_problems(_line(method=MISSING), request_line.LINE_FIELDS) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"method": None}, "method must be a string, not None"),
        ({"method": ["POST"]}, "method must be a string, not ['POST']"),
        ({"url": MISSING}, "url must be a string, not nothing"),
        ({"url": 3}, "url must be a string, not 3"),
        ({"body": MISSING}, "body must be a JSON object, not nothing"),
        ({"body": [CHAT]}, "body must be a JSON object, not [{"),
        ({"body": None}, "body must be a JSON object, not None"),
        ({"batch_id": "b1", "x": 1}, "unknown fields ['batch_id', 'x']"),
    ],
)
def test_shape_problems(fields: dict[str, object], message: str) -> None:
    problems = request_line.shape_problems(_line(**fields), request_line.LINE_FIELDS)
    assert [problem.stage for problem in problems] == [Stage.SHAPE]
    assert problems[0].message.startswith(message)
    assert problems[0].response.status_code == HTTPStatus.BAD_REQUEST


def test_a_record_may_carry_its_batch_id() -> None:
    record = {**_line(), "batch_id": BATCH_ID}
    assert request_line.shape_problems(record, request_line.RECORD_FIELDS) == []


@pytest.mark.parametrize("url", SUPPORTED_ENDPOINTS)
@pytest.mark.parametrize("body", [{}, {"stream": False}, {"stream": None}, {"stream": 0}])
def test_serving_allowed(url: str, body: dict[str, Any]) -> None:
    assert request_line.serving_refusal("POST", url, body) is None


@pytest.mark.parametrize(
    ("method", "url", "body", "expected"),
    [
        ("GET", "/v1/completions", {}, method_not_allowed("GET")),
        ("post", "/v1/completions", {}, method_not_allowed("post")),
        ("POST", "/v1/moderations", {}, unsupported_endpoint("/v1/moderations")),
        ("POST", "/v1/completions/", {}, unsupported_endpoint("/v1/completions/")),
        ("POST", "/v1/completions", {"stream": True}, streaming_refused()),
        ("POST", "/v1/completions", {"stream": "yes"}, streaming_refused()),
        ("GET", "/v1/moderations", {"stream": True}, method_not_allowed("GET")),  # engine order
    ],
)
def test_serving_refused_with_vllms_bodies(
    method: str, url: str, body: dict[str, Any], expected: object
) -> None:
    assert request_line.serving_refusal(method, url, body) == expected


def test_check_line_lists_every_problem_earliest_stage_first() -> None:
    line = _line(custom_id="", method="GET", body={"p": "x" * LIMIT, "stream": True}, extra=1)
    problems = request_line.check_line(line, max_bytes=LIMIT, batch_id=BATCH_ID)
    assert [p.stage for p in problems] == [
        Stage.ATTRIBUTION,
        Stage.SIZE,
        Stage.SHAPE,
        Stage.SERVING,
        Stage.SERVING,
    ]


def test_check_record_also_judges_the_batch_id() -> None:
    problems = request_line.check_record(_line(), max_bytes=LIMIT)
    assert [p.message.split(" ")[:2] for p in problems] == [["unsafe", "batch_id"]]
    assert request_line.check_record({**_line(), "batch_id": BATCH_ID}, max_bytes=LIMIT) == []


def test_the_answer_is_the_earliest_stages() -> None:
    line = _line(url=5, method="GET", body={"p": "x" * LIMIT})
    size_first = request_line.answer(request_line.check_line(line, max_bytes=LIMIT))
    assert size_first.status_code == 413
    shape = request_line.answer(request_line.check_line(_line(url=5, body=1), max_bytes=LIMIT))
    assert shape.status_code == 400
    assert request_line.error_message(shape) == (
        "Invalid batch request line: url must be a string, not 5; body must be a JSON object, not 1"
    )
    serving = request_line.check_line(_line(method="GET", url="/x"), max_bytes=LIMIT)
    assert request_line.answer(serving) == method_not_allowed("GET")


# --- the four callers agree ---------------------------------------------------------------------

OK, DEAD = "ok", "dead"


def _compact(document: object) -> bytes:
    """As submit publishes it (orjson); json for what orjson cannot write."""
    try:
        return orjson.dumps(document)
    except orjson.JSONEncodeError:
        return json.dumps(document, separators=(",", ":")).encode()


def _raw(line: object) -> bytes:
    return line if isinstance(line, bytes) else json.dumps(line).encode()


def _worker(raw: bytes) -> tuple[str | int, dict[str, Any] | None]:
    """The worker's verdict on a line, published with its batch id, and the body it answers."""
    document = request_line.decode(raw)
    record = raw if isinstance(document, Problem) else _compact({**document, "batch_id": BATCH_ID})
    parsed = parse_record(record, max_bytes=LIMIT)
    if isinstance(parsed, DeadLetter):
        return DEAD, None
    if isinstance(parsed, InvalidRequest):
        return parsed.response.status_code, parsed.response.body
    refusal = request_line.serving_refusal(parsed.method, parsed.url, parsed.body)
    return (OK, None) if refusal is None else (refusal.status_code, refusal.body)


def _run_batch(tmp_path: Path, raw: bytes) -> tuple[str | int, dict[str, Any] | None]:
    """run-batch's verdict: its local error line, or what the worker makes of what it submits."""
    path = tmp_path / "run.jsonl"
    path.write_bytes(raw + b"\n")
    [(_, request, error_line)] = list(classify_lines(path, batch_id=BATCH_ID, max_bytes=LIMIT))
    if request is not None:  # published as is: it must fit one message
        assert len(orjson.dumps({**request, "batch_id": BATCH_ID})) <= LIMIT
        return _worker(orjson.dumps(request))
    assert error_line is not None
    line = orjson.loads(error_line)
    if line["custom_id"] is None:
        return DEAD, None
    return line["response"]["status_code"], line["response"]["body"]


def _submit(tmp_path: Path, raw: bytes) -> bool:
    path = tmp_path / "submit.jsonl"
    path.write_bytes(raw + b"\n")
    return validate_batch_file(path, batch_id=BATCH_ID, max_bytes=LIMIT).ok


BIG = {"model": "m", "prompt": "x" * LIMIT}
#: (line, verdict, run-batch's verdict where it differs on purpose)
TABLE: list[tuple[str, object, str | int, str | int | None]] = [
    ("valid", _line(), OK, None),
    ("no method: POST", _line(method=MISSING), OK, None),
    ("negative n is vLLM's business", _line(body={**CHAT, "n": -1}), OK, None),
    ("huge integer", _line(body={**CHAT, "seed": 10**30}), OK, None),
    ("stream false", _line(body={**CHAT, "stream": False}), OK, None),
    ("custom_id of 512", _line(custom_id="c" * 512), OK, None),
    ("not JSON", b"{oops", DEAD, None),
    ("not UTF-8", b'{"custom_id": "\xff"}', DEAD, None),
    ("NaN", b'{"custom_id": "c1", "body": {"t": NaN}}', DEAD, None),
    ("an array", b"[1, 2]", DEAD, None),
    ("no custom_id", _line(custom_id=MISSING), DEAD, None),
    ("empty custom_id", _line(custom_id=""), DEAD, None),
    ("custom_id of 513", _line(custom_id="c" * 513), DEAD, None),
    ("numeric custom_id", _line(custom_id=1), DEAD, None),
    ("null custom_id", _line(custom_id=None), DEAD, None),
    ("too large and no custom_id", _line(custom_id=None, body=BIG), DEAD, None),
    ("too large", _line(body=BIG), 413, None),
    ("too large and malformed", _line(body=BIG, url=None), 413, None),
    ("too deep to publish", _line(body={**CHAT, "x": _deep(300)}), 400, None),
    ("method not a string", _line(method=1), 400, None),
    ("no url", _line(url=MISSING), 400, None),
    ("body not an object", _line(body="text"), 400, None),
    ("no body", _line(body=MISSING), 400, None),
    ("unknown field", _line(priority=1), 400, OK),  # run-batch drops it, as vLLM's does
    ("GET", _line(method="GET"), 405, None),
    ("lower-case post", _line(method="post"), 405, None),
    ("unsupported endpoint", _line(url="/v1/moderations"), 404, 400),  # vLLM run-batch's 400
    ("stream", _line(body={**CHAT, "stream": True}), 400, None),
]


@pytest.mark.parametrize(
    ("line", "verdict", "run_batch"), [row[1:] for row in TABLE], ids=[row[0] for row in TABLE]
)
def test_submit_run_batch_and_the_worker_agree(
    tmp_path: Path, line: object, verdict: str | int, run_batch: str | int | None
) -> None:
    raw = _raw(line)
    assert _submit(tmp_path, raw) is (verdict == OK)
    worker_verdict, worker_body = _worker(raw)
    assert worker_verdict == verdict
    local_verdict, local_body = _run_batch(tmp_path, raw)
    assert local_verdict == (run_batch or verdict)
    if run_batch is None and isinstance(verdict, int):
        assert local_body == worker_body  # the same answer, wherever it is given


@pytest.mark.parametrize(
    ("line", "model"),
    [
        ({"body": {"model": "tiny-llama"}}, "tiny-llama"),
        ({"body": {"model": "m" * 256}}, "m" * 256),
        ({"body": {"model": "m" * 257}}, None),  # a manifest could not carry it
        ({"body": {"model": ""}}, None),
        ({"body": {"model": 3}}, None),
        ({"body": "not an object"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_the_model_a_line_names(line: dict[str, Any] | None, model: str | None) -> None:
    assert request_line.line_model(line) == model
