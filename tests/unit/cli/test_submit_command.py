"""``llm-stream submit``: a file, its metadata and its batch id are checked before anything is
published (the address given reaches no broker, so a publish would fail the test)."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
import pytest

from llm_stream.cli.commands import parse_metadata, run_submit
from llm_stream.cli.exit_codes import EXIT_INPUT_FILE
from llm_stream.cli.main import build_parser, main


def _args(*argv: str) -> argparse.Namespace:
    # An address nothing listens on: any attempt to publish would fail the test.
    return build_parser().parse_args(["submit", *argv, "--bootstrap-servers", "127.0.0.1:1"])


def _submit(*argv: str) -> int:
    """The command's exit code, its failure reported as the console script reports it."""
    return main(["submit", *argv, "--bootstrap-servers", "127.0.0.1:1"])


def test_metadata_pairs_are_parsed_and_bounded() -> None:
    assert parse_metadata(["team=search", "run=a=b"]) == {"team": "search", "run": "a=b"}
    with pytest.raises(ValueError, match="key=value"):
        parse_metadata(["novalue"])
    with pytest.raises(ValueError, match="16"):
        parse_metadata([f"k{i}=v" for i in range(17)])


def test_an_invalid_file_is_refused_naming_its_lines_and_nothing_is_published(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.jsonl"
    good = {"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {}}
    path.write_bytes(orjson.dumps(good) + b"\n{oops\n" + orjson.dumps(good) + b"\n")
    assert _submit(str(path)) == EXIT_INPUT_FILE
    err = capsys.readouterr().err
    assert "line 2: not valid JSON" in err
    assert "line 3: duplicate custom_id 'a'" in err


def test_an_unsafe_batch_id_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("{}\n")
    assert run_submit(_args(str(path), "--batch-id", "../etc")) == 2
    assert "unsafe batch_id '../etc'" in capsys.readouterr().err


def test_a_huge_batch_id_is_refused_in_a_bounded_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("{}\n")
    assert run_submit(_args(str(path), "--batch-id", "b" * 600_000)) == 2
    err = capsys.readouterr().err
    assert "(600000 chars)" in err
    assert len(err) < 400


def test_a_line_over_the_message_limit_is_refused_before_anything_is_published(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_STREAM_MAX_MESSAGE_BYTES", "2048")
    path = tmp_path / "big.jsonl"
    small = {"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {}}
    big = {**small, "custom_id": "b", "body": {"prompt": "x" * 3000}}
    path.write_bytes(orjson.dumps(small) + b"\n" + orjson.dumps(big) + b"\n")
    assert _submit(str(path), "--batch-id", "b1") == EXIT_INPUT_FILE
    size = len(orjson.dumps({**big, "batch_id": "b1"}))
    err = capsys.readouterr().err
    assert f"line 2: the request record is {size} bytes, over the 2048-byte limit" in err
    assert "line 1" not in err


def test_a_line_over_the_line_limit_is_refused_unread_before_anything_is_published(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_STREAM_BATCH_MAX_LINE_BYTES", "2048")
    path = tmp_path / "long.jsonl"
    small = {"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {}}
    long_line = orjson.dumps({**small, "custom_id": "b", "body": {"prompt": "x" * 3000}})
    path.write_bytes(orjson.dumps(small) + b"\n" + long_line + b"\n")
    assert _submit(str(path), "--batch-id", "b1") == EXIT_INPUT_FILE
    err = capsys.readouterr().err
    assert f"line 2: the line is {len(long_line)} bytes, over the 2048-byte limit" in err
    assert "line 1" not in err


def test_a_completion_window_over_the_longest_allowed_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_STREAM_BATCH_MAX_COMPLETION_WINDOW_S", "86400")
    path = tmp_path / "in.jsonl"
    line = {"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {}}
    path.write_bytes(orjson.dumps(line) + b"\n")
    assert run_submit(_args(str(path), "--completion-window", "25h")) == 2
    err = capsys.readouterr().err
    assert "completion window 25h is longer than 1d" in err


def test_priority_is_an_integer_kept_in_the_metadata_within_its_bounds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _args("in.jsonl", "--priority", "-3").priority == -3
    with pytest.raises(SystemExit):
        _args("in.jsonl", "--priority", "high")
    path = tmp_path / "in.jsonl"
    line = {"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {}}
    path.write_bytes(orjson.dumps(line) + b"\n")
    sixteen = [arg for i in range(16) for arg in ("--metadata", f"k{i}=v")]
    assert run_submit(_args(str(path), *sixteen, "--priority", "1")) == 2  # a 17th pair
    assert "invalid batch settings: metadata" in capsys.readouterr().err
