"""Write or check the generated files in ``contracts/``: JSON Schema per message, AsyncAPI.

``python -m llm_stream.kafka.contract_files write`` (``make contracts``) regenerates them; a unit
test fails when the checked-in files differ from what the models generate, so the contracts
never drift from the code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from llm_stream.contracts import ALL_CONTRACTS
from llm_stream.settings import Settings

#: The repository's contracts/ folder (service/llm_stream/kafka/ -> the repository root).
CONTRACTS_DIR = Path(__file__).resolve().parents[3] / "contracts"


def _dump(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def render() -> dict[str, str]:
    """File name -> content of every generated contract file."""
    from llm_stream.kafka.asyncapi import build_specification

    files = {
        f"{name}.schema.json": _dump(model.model_json_schema())
        for name, model in ALL_CONTRACTS.items()
    }
    # Defaults only, so the document does not depend on the environment it was built in.
    spec = build_specification(Settings.model_construct()).to_specification()
    files["asyncapi.json"] = _dump(json.loads(spec.to_json()))
    return files


def stale_files(directory: Path = CONTRACTS_DIR) -> list[str]:
    return [
        name
        for name, content in render().items()
        if not (directory / name).is_file() or (directory / name).read_text() != content
    ]


def write(directory: Path = CONTRACTS_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in render().items():
        (directory / name).write_text(content)


def main(argv: list[str]) -> int:
    if argv == ["write"]:
        write()
        return 0
    if argv == ["check"]:
        stale = stale_files()
        for name in stale:
            print(f"stale: contracts/{name} (run: make contracts)", file=sys.stderr)
        return 1 if stale else 0
    print("usage: python -m llm_stream.kafka.contract_files write|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
