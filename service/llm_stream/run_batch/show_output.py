"""Print a batch output file as a short table: what ``make demo`` shows a newcomer."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson


def _error_message(line: dict[str, Any], body: dict[str, Any]) -> str | None:
    """The error of a failed line, in OpenAI's shape (in the body) or vLLM's (in ``error``)."""
    error = body.get("error") or line.get("error")
    if error is None:
        return None
    if isinstance(error, dict):
        error = error.get("error", error)
        error = error.get("message", error) if isinstance(error, dict) else error
    return (str(error).splitlines() or [""])[0]


def _response_text(body: dict[str, Any]) -> str:
    parts = [
        part.get("text", "")
        for item in body.get("output") or []
        if isinstance(item, dict)
        for part in item.get("content") or []
        if isinstance(part, dict) and part.get("type") == "output_text"
    ]
    return "".join(parts)


def summarise(line: dict[str, Any]) -> str:
    response = line.get("response") or {}
    body = response.get("body") or {}
    status = response.get("status_code", "-")
    message = _error_message(line, body)
    if message is not None:
        text = "error: " + message
    elif body.get("object") == "response":  # the Responses API: its output's text parts
        text = _response_text(body)
    else:
        choices = body.get("choices") or [{}]
        first = choices[0]
        text = first.get("text") or (first.get("message") or {}).get("content") or ""
        if len(choices) > 1:
            text = f"[{len(choices)} choices] {text}"
    return f"{line.get('custom_id')!s:<20} {status!s:<4} {text!r:.70}"


def main(argv: list[str]) -> int:
    path = Path(argv[0])
    print(f"{'custom_id':<20} {'code':<4} output")
    for raw in path.read_bytes().splitlines():
        print(summarise(orjson.loads(raw)))
    print(f"\n{path}: the OpenAI batch output file, one line per input line")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
