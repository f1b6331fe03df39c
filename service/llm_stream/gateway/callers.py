"""Who is asking: the project a request's key belongs to, and the one rule of what it sees.

``ApiKeyAuth`` puts the caller in the request's ASGI scope state; routes read it through
``CallerDep``. A key of a project sees, lists, downloads and cancels that project's objects
only (another's are answered 404, as for an unknown id, as OpenAI does); an admin key sees every
project's. What any key creates belongs to its own project.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from llm_stream.contracts import DEFAULT_PROJECT, owner_project, stored_project
from llm_stream.gateway.errors import unauthorized

#: The key of the caller in the ASGI scope's ``state``.
CALLER_STATE = "llm_stream_caller"


@dataclass(frozen=True, slots=True)
class Caller:
    """A key's project, and whether it sees every project's objects."""

    project: str
    admin: bool = False
    #: Names the key (a prefix of its digest) where it is counted, as for request rates.
    key_id: str = field(default="", compare=False)

    def sees(self, project: str | None) -> bool:
        """Whether an object of ``project`` (None: the default project) is this caller's to
        see: the one rule every route and the web page apply."""
        return self.admin or owner_project(project) == self.project

    @property
    def creates_for(self) -> str | None:
        """What an object this caller creates records as its project."""
        return stored_project(self.project)

    @property
    def lists(self) -> str | None:
        """The project a list is narrowed to; None: every project (an admin)."""
        return None if self.admin else self.project


#: The caller of a gateway without keys (open: loopback, or ``--allow-no-auth``): it sees
#: everything, as before projects existed, and creates for the default project.
OPEN = Caller(DEFAULT_PROJECT, admin=True)


def set_caller(state: dict[str, object], caller: Caller) -> None:
    state[CALLER_STATE] = caller


async def _caller(request: Request) -> Caller:
    """The caller ``ApiKeyAuth`` found; ``OPEN`` only on a gateway that asks for no key."""
    found = request.scope.get("state", {}).get(CALLER_STATE)
    if isinstance(found, Caller):
        return found
    if request.app.state.gateway.keys.open:
        return OPEN
    raise unauthorized("You didn't provide an API key.", code=None)  # no route gets here so


#: A route's parameter that receives the request's ``Caller``.
CallerDep = Annotated[Caller, Depends(_caller)]
