"""Curation: where judgements live, the named answer schemas, the Label Studio server."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr


class CurationSettings(BaseModel):
    """Read by the gateway (judgements), ``llm-stream export`` and ``llm-stream curate``."""

    judgements_topic: str = Field(
        "llm-stream.judgements",
        description="Reviewers' judgements of batch lines, keyed by batch_id/custom_id, "
        "compacted: the last judgement of a line wins.",
    )
    schemas_dir: Path | None = Field(
        None,
        description="A folder of named JSON Schemas (<name>.json) a batch's answers may be "
        "checked against: the one its metadata names under `schema`, or "
        "`llm-stream export --schema <name>`; unset: none.",
    )
    label_studio_url: str = Field(
        "http://127.0.0.1:8080", description="The Label Studio server `curate` talks to."
    )
    label_studio_api_key: SecretStr | None = Field(
        None,
        description="A Label Studio access token (its legacy token, sent as `Token ...`).",
    )
