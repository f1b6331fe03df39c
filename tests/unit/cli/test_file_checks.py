"""The places a command reads, writes or listens on are checked before any work starts, and a
wrong one is named with the reason."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from llm_stream.cli.errors import InputFileError, PortInUseError
from llm_stream.cli.file_checks import (
    check_input_file,
    check_output_dir,
    check_output_file,
    check_port_free,
)


def test_an_unreadable_input_file_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Permission bits do not stop root, who runs CI: the refusal is the filesystem's answer.
    path = tmp_path / "in.jsonl"
    path.write_text("{}\n")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(InputFileError, match=r"cannot read input file .*Permission denied"):
        check_input_file(path)


def test_an_empty_input_file_is_refused_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.touch()
    with pytest.raises(InputFileError, match="is empty"):
        check_input_file(path)
    check_input_file(path, allow_empty=True)


def test_an_output_place_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(Exception, match="cannot write to output directory"):
        check_output_dir(blocker / "batches")
    with pytest.raises(Exception, match="not a writable directory"):
        check_output_file(tmp_path / "absent" / "out.jsonl")
    with pytest.raises(Exception, match="is a directory"):
        check_output_file(tmp_path)
    check_output_dir(tmp_path / "new" / "batches")
    check_output_file(tmp_path / "out.jsonl")
    assert list((tmp_path / "new" / "batches").iterdir()) == []


def test_a_missing_input_file_or_a_directory_is_named_with_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"in\.jsonl does not exist"):
        check_input_file(tmp_path / "in.jsonl")
    with pytest.raises(InputFileError, match="is not a file"):
        check_input_file(tmp_path)


def test_a_port_already_listened_on_is_refused_with_the_flag_to_change() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=rf"127\.0\.0\.1:{port} .*another --port"):
            check_port_free("127.0.0.1", port, "--port")
    check_port_free("127.0.0.1", port, "--port")  # closed: free again


def test_port_zero_is_always_free() -> None:
    """Port 0 asks the system for any free port: nothing to check."""
    check_port_free("127.0.0.1", 0, "--port")
