"""Check the places a command reads, writes or listens on before any work starts, so the user
hears which path or port is wrong and why, instead of an OSError from deep inside a run.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

from llm_stream.cli.errors import InputFileError, OutputNotWritableError, PortInUseError


def check_input_file(path: Path, *, allow_empty: bool = False) -> None:
    """Raise ``InputFileError`` unless ``path`` is a readable file (with content unless
    ``allow_empty``)."""
    if not path.exists():
        raise InputFileError(
            f"input file {path} does not exist. Check the path "
            "(an OpenAI batch input file: one JSON request per line)."
        )
    if not path.is_file():
        raise InputFileError(f"input file {path} is not a file. Give the path of a JSONL file.")
    try:
        with path.open("rb") as file:
            first = file.read(1)
    except OSError as error:
        raise InputFileError(
            f"cannot read input file {path} ({error.strerror or error}). Check its permissions."
        ) from error
    if not first and not allow_empty:
        raise InputFileError(
            f"input file {path} is empty. It needs one JSON request per line "
            '({"custom_id": ..., "method": "POST", "url": ..., "body": ...}).'
        )


def check_output_dir(path: Path) -> None:
    """Create ``path`` if needed and prove a file can be written there, or raise
    ``OutputNotWritableError``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as error:
        raise OutputNotWritableError(
            f"cannot write to output directory {path} ({error.strerror or error}). "
            "Give a writable directory (--output-dir / LLM_STREAM_OUTPUT_DIR)."
        ) from error


def check_output_file(path: Path) -> None:
    """Raise ``OutputNotWritableError`` unless a file can be written at ``path``."""
    parent = path.parent
    if path.is_dir():
        raise OutputNotWritableError(f"output file {path} is a directory. Give a file path.")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise OutputNotWritableError(
            f"cannot write output file {path}: {parent} is not a writable directory. "
            "Create it, or give another -o path."
        )
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".write-check-"):
            pass
    except OSError as error:
        raise OutputNotWritableError(
            f"cannot write output file {path} ({error.strerror or error}). Give another -o path."
        ) from error


def check_port_free(host: str, port: int, flag: str) -> None:
    """Raise ``PortInUseError`` when something already listens on ``host:port``."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise PortInUseError(
                f"cannot listen on {host}:{port} ({error.strerror or error}): another process "
                f"holds it, perhaps one already serving. Stop it, or choose another {flag}."
            ) from error
