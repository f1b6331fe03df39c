"""What a batch's stored batch object (``batch.json``, its marker) says of its files: which
files it names, the project they belong to, and when they expire."""

from __future__ import annotations

from typing import Any

import orjson

from llm_stream.contracts import is_project_id, stored_project


def _marker_fields(marker: bytes) -> dict[str, Any]:
    try:
        named = orjson.loads(marker)
    except orjson.JSONDecodeError:
        return {}
    return named if isinstance(named, dict) else {}


def named_files(marker: bytes) -> list[str]:
    """The output and error file ids a stored batch object names (none if it is unreadable)."""
    named = _marker_fields(marker)
    values = [named.get(field) for field in ("output_file_id", "error_file_id")]
    return [value for value in values if isinstance(value, str)]


def named_expires_after(marker: bytes | None) -> int | None:
    """Seconds after they are written that the batch's files expire (its
    ``output_expires_after``); None: never, or no batch object."""
    policy = _marker_fields(marker or b"").get("output_expires_after")
    seconds = policy.get("seconds") if isinstance(policy, dict) else None
    return seconds if isinstance(seconds, int) and seconds > 0 else None


def named_project(marker: bytes | None) -> str | None:
    """The project a stored batch object names (its files are that project's); None: the
    default project, or no batch object (a batch not written yet: its files are named by no
    batch object, and their ids, made of a random batch id, are known to nobody yet)."""
    project = _marker_fields(marker or b"").get("project")
    return stored_project(project) if isinstance(project, str) and is_project_id(project) else None
