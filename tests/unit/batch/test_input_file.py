from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from llm_stream.batch.input_file import MAX_REPORTED_PROBLEMS, iter_lines, validate_batch_file
from llm_stream.batch.request_line import LONGEST_BATCH_ID, Problem


def _write(tmp_path: Path, lines: list[object]) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        b"\n".join(line if isinstance(line, bytes) else orjson.dumps(line) for line in lines)
    )
    return path


def _line(custom_id: str, **overrides: object) -> dict[str, object]:
    line: dict[str, object] = {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    }
    return {**line, **overrides}


def test_a_valid_file_passes_with_its_endpoint(tmp_path: Path) -> None:
    check = validate_batch_file(_write(tmp_path, [_line("a"), b"", _line("b")]))
    assert check.ok, check.report()
    assert (check.line_count, check.endpoint) == (2, "/v1/chat/completions")


def test_every_problem_names_its_line(tmp_path: Path) -> None:
    lines: list[object] = [
        _line("a"),
        b"{not json",
        _line("a"),
        _line("c", method="GET"),
        _line("d", url="/v1/completions"),
        _line("e", body="text"),
        _line("f", body={"model": "other"}),
        _line("", extra=1),
        _line("g", body={"model": "m", "stream": True}),
        b"[1]",
        _line("h", url=None),
    ]
    check = validate_batch_file(_write(tmp_path, lines))
    assert not check.ok
    report = check.report()
    assert "line 2: not valid JSON" in report
    assert "line 3: duplicate custom_id 'a'" in report
    assert "line 4: Method 'GET' is not allowed" in report
    assert "line 5: url '/v1/completions' differs" in report
    assert "line 6: body must be a JSON object" in report
    assert "line 7: model 'other' differs" in report
    assert "line 8: custom_id must be a string of 1 to 512 characters, not ''" in report
    assert "line 8: unknown fields ['extra']" in report
    assert "line 9: Request must not be sent in stream mode" in report
    assert "line 10: not a JSON object but an array" in report
    assert "line 11: url must be a string, not None" in report
    assert not any(problem.startswith("line 1:") for problem in check.problems)


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    check = validate_batch_file(_write(tmp_path, [b""]))
    assert not check.ok
    assert "no request lines" in check.report()


def test_unsupported_endpoints_are_refused(tmp_path: Path) -> None:
    check = validate_batch_file(_write(tmp_path, [_line("a", url="/v1/moderations")]))
    assert not check.ok
    assert "line 1: Unsupported endpoint '/v1/moderations'" in check.report()


def test_a_line_without_method_is_post(tmp_path: Path) -> None:
    line = _line("a")
    del line["method"]
    check = validate_batch_file(_write(tmp_path, [line]))
    assert check.ok, check.report()


def test_custom_ids_of_512_characters_pass_and_513_do_not(tmp_path: Path) -> None:
    assert validate_batch_file(_write(tmp_path, [_line("c" * 512)])).ok
    check = validate_batch_file(_write(tmp_path, [_line("c" * 513)]))
    assert not check.ok
    assert "(513 chars)" in check.report()
    assert len(check.report()) < 400


def _sized_line(size: int, batch_id: str) -> dict[str, object]:
    """A line whose record (with ``batch_id``) is exactly ``size`` bytes."""
    line = _line("a", body={"model": "m", "prompt": ""})
    padding = size - len(orjson.dumps({**line, "batch_id": batch_id}))
    return _line("a", body={"model": "m", "prompt": "x" * padding})


def test_a_record_of_exactly_the_limit_passes_and_one_byte_more_does_not(tmp_path: Path) -> None:
    fits = _write(tmp_path, [_sized_line(2048, "batch_1")])
    assert validate_batch_file(fits, batch_id="batch_1", max_bytes=2048).ok
    check = validate_batch_file(fits, batch_id="batch_12", max_bytes=2048)
    assert not check.ok
    assert check.problems == [
        "line 1: the request record is 2049 bytes, over the 2048-byte limit of a Kafka message "
        "(max_message_bytes)"
    ]


def test_without_a_batch_id_lines_are_sized_for_the_longest(tmp_path: Path) -> None:
    path = _write(tmp_path, [_sized_line(2048, LONGEST_BATCH_ID)])
    assert validate_batch_file(path, max_bytes=2048).ok
    assert not validate_batch_file(path, max_bytes=2047).ok


def test_lines_too_deep_to_publish_are_refused(tmp_path: Path) -> None:
    """orjson reads 1024 levels but writes 254: such a line would fail half way through."""
    deep: object = "x"
    for _ in range(300):
        deep = [deep]
    path = _write(tmp_path, [json.dumps(_line("a", body={"model": "m", "p": deep})).encode()])
    check = validate_batch_file(path)
    assert not check.ok
    assert "line 1: the line cannot be published as JSON" in check.report()


def test_reports_are_bounded(tmp_path: Path) -> None:
    lines: list[object] = [b"oops"] * (MAX_REPORTED_PROBLEMS + 5)
    check = validate_batch_file(_write(tmp_path, lines))
    assert len(check.problems) == MAX_REPORTED_PROBLEMS
    assert check.report().endswith("... and 5 more")


@pytest.mark.parametrize("value", ["x" * 600_000, {"k": "x" * 600_000}])
def test_huge_values_are_not_repeated_in_reports(tmp_path: Path, value: object) -> None:
    check = validate_batch_file(_write(tmp_path, [_line("a", url=value, method=value)]))
    assert not check.ok
    assert len(check.report()) < 1000


def test_a_line_over_the_line_limit_is_one_problem_and_the_next_lines_keep_their_numbers(
    tmp_path: Path,
) -> None:
    long_line = orjson.dumps(_line("long", body={"model": "m", "prompt": "x" * 10_000}))
    path = _write(tmp_path, [_line("a"), long_line, b"", _line("b")])
    check = validate_batch_file(path, max_line_bytes=4096)
    assert check.line_count == 3
    assert check.problems == [
        f"line 2: the line is {len(long_line)} bytes, over the 4096-byte limit of a request "
        "line (batch_max_line_bytes)"
    ]


@pytest.mark.parametrize("newline", [b"\n", b""])
def test_a_line_of_exactly_the_limit_is_read_and_one_byte_more_is_not(
    tmp_path: Path, newline: bytes
) -> None:
    """The limit counts the line's bytes without its newline, the last line (no newline) too."""
    line = orjson.dumps(_line("a", body={"model": "m", "prompt": ""}))
    exact = line[:-2] + b" " * (2048 - len(line)) + line[-2:]  # padded inside the JSON
    assert len(exact) == 2048
    path = tmp_path / "in.jsonl"
    path.write_bytes(exact + newline)
    assert validate_batch_file(path, max_line_bytes=2048).ok
    assert validate_batch_file(path, max_line_bytes=2047).problems == [
        "line 1: the line is 2048 bytes, over the 2047-byte limit of a request line "
        "(batch_max_line_bytes)"
    ]


def _traced_peak(work: Callable[[], object]) -> int:
    """Peak bytes Python allocated while ``work`` ran (file buffers and the bytes read too)."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_huge_line_is_never_held_whole(tmp_path: Path) -> None:
    """A 32 MiB line of thousands of small messages (parsed, it would take hundreds of MiB) is
    read a bounded piece at a time and skipped, whatever its length."""
    messages = [{"role": "user", "content": "hi"}] * 1_100_000
    huge = orjson.dumps(_line("huge", body={"model": "m", "messages": messages}))
    assert len(huge) > 32 * 2**20
    path = _write(tmp_path, [_line("a"), huge, _line("b")])
    del messages, huge
    limit = 2**20

    lines: list[tuple[int, object]] = []
    peak = _traced_peak(lambda: lines.extend(iter_lines(path, limit)))
    assert [number for number, _ in lines] == [1, 2, 3]
    assert isinstance(lines[1][1], Problem)
    assert peak < 3 * limit

    check = validate_batch_file(path, max_line_bytes=limit)
    assert [problem.split(":")[0] for problem in check.problems] == ["line 2"]
    assert _traced_peak(lambda: validate_batch_file(path, max_line_bytes=limit)) < 3 * limit


@pytest.mark.parametrize("url", ["/v1/responses", "/score", "/v2/rerank"])
def test_a_file_of_any_served_endpoint_is_submitted(tmp_path: Path, url: str) -> None:
    """What ``submit`` publishes: a Responses file as OpenAI writes it, score and rerank."""
    body = {"model": "m", "input": "hi"} if url == "/v1/responses" else {"model": "m"}
    check = validate_batch_file(_write(tmp_path, [_line("a", url=url, body=body)]))
    assert check.ok, check.report()
    assert (check.endpoint, check.line_count) == (url, 1)
