"""Print a batch output file as a short table: what ``make demo`` shows a newcomer."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson


def summarise(line: dict[str, Any]) -> str:
    response = line.get("response") or {}
    body = response.get("body") or {}
    status = response.get("status_code", "-")
    if "error" in body:
        text = "error: " + str(body["error"].get("message", "")).splitlines()[0]
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
