"""What each project may do: its quotas per model and its keys' request rate.

The settings give every project's defaults; the projects file may give a project its own::

    {"projects": {"search": {"keys": ["..."], "requests_per_minute": 600,
                             "models": {"*": {"enqueued_tokens": 2000000, "batches_in_flight": 20},
                                        "big-model": {"enqueued_tokens": 100000}}}}}

A model's own entry wins, then ``"*"`` (every model the project does not name), then the
settings; within an entry a limit left out falls back the same way. 0 is no limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from llm_stream.settings import Settings

#: The ``models`` entry that stands for every model a project does not name.
EVERY_MODEL = "*"


class ModelLimits(BaseModel):
    """A project's quotas for one model (or ``"*"``), as the projects file gives them."""

    model_config = ConfigDict(extra="forbid")

    enqueued_tokens: int | None = Field(None, ge=0)
    batches_in_flight: int | None = Field(None, ge=0)


class ProjectLimits(BaseModel):
    """A project's limits as the projects file gives them (each unset: the settings')."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int | None = Field(None, ge=0)
    models: dict[str, ModelLimits] = Field(default_factory=dict)


@dataclass(frozen=True)
class Quota:
    """One project's quotas for one model; 0: no limit."""

    enqueued_tokens: int
    batches_in_flight: int


@dataclass(frozen=True)
class Limits:
    """Every project's limits: the settings' defaults and the projects file's own."""

    requests_per_minute: int = 0
    enqueued_tokens: int = 0
    batches_in_flight: int = 0
    projects: Mapping[str, ProjectLimits] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls, settings: Settings, projects: Mapping[str, ProjectLimits] | None = None
    ) -> Limits:
        return cls(
            requests_per_minute=settings.gateway_requests_per_minute,
            enqueued_tokens=settings.quota_enqueued_tokens,
            batches_in_flight=settings.quota_batches_in_flight,
            projects=dict(projects or {}),
        )

    def requests_per_minute_of(self, project: str) -> int:
        """How many requests each of ``project``'s keys may make in a sliding minute."""
        own = self.projects.get(project)
        found = None if own is None else own.requests_per_minute
        return self.requests_per_minute if found is None else found

    def quota(self, project: str, model: str) -> Quota:
        """``project``'s quotas for ``model``."""
        own = self.projects.get(project)
        entries = [] if own is None else [own.models.get(model), own.models.get(EVERY_MODEL)]
        tokens = next(
            (e.enqueued_tokens for e in entries if e and e.enqueued_tokens is not None), None
        )
        batches = next(
            (e.batches_in_flight for e in entries if e and e.batches_in_flight is not None), None
        )
        return Quota(
            self.enqueued_tokens if tokens is None else tokens,
            self.batches_in_flight if batches is None else batches,
        )
