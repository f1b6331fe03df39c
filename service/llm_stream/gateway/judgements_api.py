"""``/v1/batches/{id}/judgements``: reviewers' verdicts on a batch's lines, read and written.

A judgement is a record on the compacted judgements topic (``curation.judgements``), so the
gateway keeps none of its own: it follows the topic, answers from what it read, and a PUT is
answered once the broker holds the record. Who may see a batch may judge its lines.
"""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from llm_stream.contracts import Judgement
from llm_stream.gateway.batches_api import visible_batch
from llm_stream.gateway.callers import CallerDep
from llm_stream.gateway.errors import error_responses
from llm_stream.gateway.state import GatewayDep

router = APIRouter(prefix="/v1/batches", tags=["judgements"])

_RESPONSES = error_responses(
    HTTPStatus.BAD_REQUEST, HTTPStatus.NOT_FOUND, HTTPStatus.SERVICE_UNAVAILABLE
)


class JudgementPut(BaseModel):
    """What a reviewer says of a line; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    verdict: Literal["accepted", "rejected", "gold"]
    corrected: str | None = Field(None, max_length=1_000_000)
    note: str | None = Field(None, max_length=10_000)


class JudgementList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Judgement]
    first_id: str | None
    last_id: str | None
    has_more: bool = False


@router.get("/{batch_id}/judgements", responses=_RESPONSES)
async def list_judgements(gateway: GatewayDep, caller: CallerDep, batch_id: str) -> JudgementList:
    """Every judgement of the batch's lines, by ``custom_id``."""
    batch = await visible_batch(gateway, caller, batch_id)
    found = gateway.judgements.of_batch(batch.id)
    return JudgementList(
        data=found,
        first_id=found[0].custom_id if found else None,
        last_id=found[-1].custom_id if found else None,
    )


@router.put("/{batch_id}/judgements/{custom_id}", responses=_RESPONSES)
async def put_judgement(
    gateway: GatewayDep,
    caller: CallerDep,
    batch_id: str,
    custom_id: Annotated[str, Path(min_length=1, max_length=512)],
    body: JudgementPut,
) -> Judgement:
    """Judge a line: the last judgement of a line is its judgement."""
    batch = await visible_batch(gateway, caller, batch_id)
    judgement = Judgement(
        batch_id=batch.id,
        custom_id=custom_id,
        verdict=body.verdict,
        corrected=body.corrected,
        note=body.note,
        reviewer=caller.key_id or caller.project,
        judged_at=time.time(),
    )
    await gateway.judgements.put(judgement)
    return judgement
