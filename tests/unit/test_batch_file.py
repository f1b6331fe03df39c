from __future__ import annotations

from pathlib import Path

import orjson

from service.batch_file import validate_batch_file


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
    ]
    check = validate_batch_file(_write(tmp_path, lines))
    assert not check.ok
    report = check.report()
    assert "line 2: not valid JSON" in report
    assert "line 3: duplicate custom_id 'a'" in report
    assert "line 4: method must be POST" in report
    assert "line 5: url '/v1/completions' differs" in report
    assert "line 6: body must be a JSON object" in report
    assert "line 7: model 'other' differs" in report
    assert "line 8: custom_id must be a non-empty string" in report
    assert "line 8: unknown fields ['extra']" in report
    assert not any(problem.startswith("line 1:") for problem in check.problems)


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    check = validate_batch_file(_write(tmp_path, [b""]))
    assert not check.ok
    assert "no request lines" in check.report()


def test_unsupported_endpoints_are_refused(tmp_path: Path) -> None:
    check = validate_batch_file(_write(tmp_path, [_line("a", url="/v1/responses")]))
    assert "is not one of" in check.report()
