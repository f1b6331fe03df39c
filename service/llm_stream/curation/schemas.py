"""JSON Schemas for what a batch produces, and which answers break them.

A line's schema (``line_schema``, the one rule export and review share) is the one its request
asked the model to follow (``response_format`` of type ``json_schema``), else a named schema
from ``LLM_STREAM_SCHEMAS_DIR`` (``<name>.json``): the one ``export --schema`` names, else the
one the batch's metadata names under ``schema``. An answer that is no JSON, or JSON the schema
refuses, does not validate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from llm_stream.errors import LlmStreamError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
#: Problems reported per answer, at most.
_MAX_PROBLEMS = 5
#: The batch metadata key that names the batch's answer schema.
METADATA_KEY = "schema"


class SchemaNotFoundError(LlmStreamError, ValueError):
    """A schema name that names no readable, valid schema in the folder."""


def load_schema(folder: Path | None, name: str) -> dict[str, Any]:
    """The named schema of ``folder``, checked as a JSON Schema."""
    if folder is None or not _NAME.fullmatch(name):
        raise SchemaNotFoundError(f"no schema {name!r}: set LLM_STREAM_SCHEMAS_DIR, name a file")
    try:
        schema = json.loads((folder / f"{name}.json").read_text())
        Draft202012Validator.check_schema(schema)
    except (OSError, ValueError, SchemaError) as error:
        raise SchemaNotFoundError(f"schema {name!r} in {folder}: {error}") from error
    if not isinstance(schema, dict):
        raise SchemaNotFoundError(f"schema {name!r} is not a JSON object")
    return schema


def metadata_schema(metadata: Mapping[str, str] | None) -> str | None:
    """The schema name a batch's metadata gives (``schema``), if any."""
    name = (metadata or {}).get(METADATA_KEY)
    return (name.strip() or None) if isinstance(name, str) else None


def line_schema(
    request: dict[str, Any] | None, name: str | None, folder: Path | None
) -> dict[str, Any] | None:
    """The schema a line's answer must follow: its request's own, else the named one; None
    when it has neither. ``SchemaNotFoundError`` when it falls to a name that names none."""
    schema = requested_schema(request)
    if schema is not None or name is None:
        return schema
    return _cached(folder, name, _changed_at(folder, name))


def _changed_at(folder: Path | None, name: str) -> int:
    """The file's modification time: an edited schema is read again, an unchanged one is not
    (a batch's lines share one)."""
    if folder is None or not _NAME.fullmatch(name):
        return 0
    try:
        return (folder / f"{name}.json").stat().st_mtime_ns
    except OSError:
        return 0


@lru_cache(maxsize=32)
def _cached(folder: Path | None, name: str, changed_at: int) -> dict[str, Any]:
    return load_schema(folder, name)


def requested_schema(request: dict[str, Any] | None) -> dict[str, Any] | None:
    """The schema the request's ``response_format`` asked for, if any."""
    if not request:
        return None
    response_format = request.get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    wrapper = response_format.get("json_schema")
    schema = wrapper.get("schema") if isinstance(wrapper, dict) else None
    return schema if isinstance(schema, dict) else None


def answer_problems(schema: dict[str, Any], answer: str | None) -> list[str]:
    """Why ``answer`` does not validate against ``schema``; empty when it does."""
    if answer is None:
        return ["no answer"]
    try:
        value = json.loads(answer)
    except ValueError:
        return ["the answer is not JSON"]
    validator = Draft202012Validator(schema)
    found = []
    for error in validator.iter_errors(value):
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        found.append(f"{where}: {error.message}"[:300])
        if len(found) == _MAX_PROBLEMS:
            break
    return found
