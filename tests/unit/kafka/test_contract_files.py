from __future__ import annotations

import json
from pathlib import Path

from llm_stream.kafka.contract_files import CONTRACTS_DIR, stale_files, write


def test_checked_in_contracts_match_the_models() -> None:
    assert stale_files() == [], "contracts/ is stale: run `make contracts`"


def test_a_changed_file_is_reported_stale(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "request.schema.json").write_text("{}\n")
    assert stale_files(tmp_path) == ["request.schema.json"]


def test_request_schema_requires_the_batch_line_fields() -> None:
    schema = json.loads((CONTRACTS_DIR / "request.schema.json").read_text())
    assert set(schema["required"]) == {"batch_id", "custom_id", "url", "body"}
