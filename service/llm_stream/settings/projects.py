"""Projects: which project a gateway key belongs to, and which one a Kafka producer names."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from llm_stream.contracts import PROJECT_PATTERN


class ProjectSettings(BaseModel):
    """Read by the gateway (its keys' projects) and by producers (``BatchClient``, submit)."""

    gateway_projects_file: Path | None = Field(
        None,
        description="JSON file of projects and their API keys, and of admin keys (see "
        "docs/operations.md, Projects); re-read when it changes, no restart. Set: every "
        "request needs a key, even while the file lists none.",
    )
    gateway_projects_reload_s: float = Field(
        5.0,
        gt=0,
        description="How often, at most, a request makes the gateway check whether the "
        "projects file changed.",
    )
    project: str | None = Field(
        None,
        pattern=PROJECT_PATTERN,
        description="The project the batches a Kafka producer (BatchClient, llm-stream submit) "
        "publishes belong to; unset: the default project. The Kafka ACLs on the requests and "
        "batches topics authorise the claim.",
    )
