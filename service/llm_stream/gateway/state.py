"""What every route works with: the settings, the file store and the stream, one per app
(and the batches' input links read from the store lately)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from llm_stream.curation.judgements import Judgements, MemoryJudgements
from llm_stream.files.store import FileStore
from llm_stream.gateway.auth_limit import FailedAuthLimiter
from llm_stream.gateway.input_links import InputLinks
from llm_stream.gateway.keyring import KeyRing
from llm_stream.gateway.quotas import QuotaTurns
from llm_stream.gateway.rate_limit import RateLimits
from llm_stream.gateway.revocations import RevokedSessions
from llm_stream.gateway.stream import BatchStream
from llm_stream.settings import Settings


@dataclass(frozen=True)
class Gateway:
    settings: Settings
    store: FileStore
    stream: BatchStream
    #: Wrong keys per client address, shared by the API and the web page's login.
    auth_failures: FailedAuthLimiter
    #: Web page sessions ended by a logout before they expire.
    revoked_sessions: RevokedSessions
    #: Reviewers' judgements of batch lines (followed from their topic).
    judgements: Judgements = field(default_factory=MemoryJudgements)
    #: The keys and the project each belongs to; default: as ``settings`` say.
    key_ring: KeyRing | None = None
    keys: KeyRing = field(init=False)
    input_links: InputLinks = field(init=False)
    #: Creates of one project that a quota bounds take turns here.
    quota_turns: QuotaTurns = field(init=False, default_factory=QuotaTurns)
    #: Requests per minute per key and per login address, counted across replicas.
    rate_limits: RateLimits = field(init=False, default_factory=RateLimits)

    def __post_init__(self) -> None:
        """ProjectsFileError (``keyring``) when the projects file cannot be used."""
        keys = self.key_ring if self.key_ring is not None else KeyRing.from_settings(self.settings)
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "input_links", InputLinks(self.store))


async def _gateway(request: Request) -> Gateway:
    """Async, so FastAPI calls it on the event loop: a sync dependency costs a thread hop."""
    gateway: Gateway = request.app.state.gateway
    return gateway


#: A route's parameter that receives the app's ``Gateway``.
GatewayDep = Annotated[Gateway, Depends(_gateway)]
