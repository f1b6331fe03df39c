"""``/v1/batches/{id}/judgements``: reviewers' verdicts on a batch's lines, read and written.

A judgement is a record on the compacted judgements topic (``curation.judgements``), so the
gateway keeps none of its own: it follows the topic, answers from what it read, and a PUT is
answered once the broker holds the record. Who may see a batch may judge its lines.
"""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from llm_stream.contracts import Judgement
from llm_stream.gateway.batches_api import retrieve_batch, visible_batch
from llm_stream.gateway.callers import CallerDep
from llm_stream.gateway.errors import error_responses
from llm_stream.gateway.review_lines import review_page
from llm_stream.gateway.state import GatewayDep

router = APIRouter(prefix="/v1/batches", tags=["judgements"])

#: Judgements per page of ``GET /v1/batches/{id}/judgements``.
DEFAULT_JUDGEMENTS_PAGE = 100
MAX_JUDGEMENTS_PAGE = 1000

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


class ReviewLine(BaseModel):
    """An output line as a reviewer sees it."""

    object: Literal["batch.review_line"] = "batch.review_line"
    line: int = Field(description="The line's number in the output file, from 1.")
    custom_id: str
    status_code: int | None
    answer: str | None = Field(description="The model's answer as text; null for none.")
    judgement: Judgement | None
    schema_problems: list[str] | None = Field(
        description="Why the answer (the reviewer's correction, else the model's) breaks the "
        "line's JSON Schema: empty when it validates, null when the line has no schema."
    )


class ReviewList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ReviewLine]
    page: int
    pages: int
    matched: int = Field(description="Lines whose custom_id contains `q`.")
    has_more: bool
    schema_error: str | None = Field(
        description="Why the schema the batch's metadata names cannot be used, if it cannot."
    )


@router.get("/{batch_id}/review", responses=_RESPONSES)
async def list_review_lines(
    gateway: GatewayDep,
    caller: CallerDep,
    batch_id: str,
    q: Annotated[str, Query(max_length=200)] = "",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> ReviewList:
    """A page of the finished batch's output lines (``custom_id`` containing ``q``), each with
    its judgement and whether its answer validates: what the web page's review shows."""
    batch = await retrieve_batch(gateway, caller, batch_id)
    found = await review_page(gateway, caller, batch, search=q, page=page)
    shown = found.shown
    return ReviewList(
        data=[
            ReviewLine(
                line=line.number,
                custom_id=line.custom_id,
                status_code=line.status_code,
                answer=line.answer,
                judgement=found.judgements.get(line.custom_id),
                schema_problems=line.schema_problems,
            )
            for line in shown.lines
        ],
        page=shown.page,
        pages=shown.pages,
        matched=shown.matched,
        has_more=shown.page < shown.pages,
        schema_error=found.schema_error,
    )


@router.get("/{batch_id}/judgements", responses=_RESPONSES)
async def list_judgements(
    gateway: GatewayDep,
    caller: CallerDep,
    batch_id: str,
    after: Annotated[str, Query(max_length=512)] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_JUDGEMENTS_PAGE)] = DEFAULT_JUDGEMENTS_PAGE,
) -> JudgementList:
    """The judgements of the batch's lines by ``custom_id``, a page at a time: ``after``, the
    ``last_id`` of the page before."""
    batch = await visible_batch(gateway, caller, batch_id)
    found = gateway.judgements.of_batch(batch.id, after, limit + 1)
    shown = found[:limit]
    return JudgementList(
        data=shown,
        first_id=shown[0].custom_id if shown else None,
        last_id=shown[-1].custom_id if shown else None,
        has_more=len(found) > limit,
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
