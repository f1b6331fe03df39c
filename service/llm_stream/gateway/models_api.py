"""``/v1/models``: the models live workers serve now, in OpenAI's shape.

A model is listed while at least one worker that serves it is announced (``kafka.live_workers``):
a worker group scaled to zero, or one whose workers all died, drops out within the workers'
expiry. ``created`` is when its longest-running live worker started.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from llm_stream.gateway.errors import error_responses, model_not_found
from llm_stream.gateway.state import Gateway, GatewayDep

router = APIRouter(prefix="/v1/models", tags=["models"])

_UNAVAILABLE = error_responses(HTTPStatus.SERVICE_UNAVAILABLE)
_UNKNOWN = error_responses(HTTPStatus.NOT_FOUND, HTTPStatus.SERVICE_UNAVAILABLE)


class Model(BaseModel):
    """OpenAI's model object (``openai.types.Model``)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llm-stream"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


async def served_models(gateway: Gateway) -> dict[str, Model]:
    """Each model served now, by name."""
    served: dict[str, Model] = {}
    for worker in await gateway.stream.live_workers():
        for name in worker.models:
            created = int(worker.started_at)
            known = served.get(name)
            if known is None or created < known.created:
                served[name] = Model(id=name, created=created)
    return served


@router.get("", responses=_UNAVAILABLE)
async def list_models(gateway: GatewayDep) -> ModelList:
    served = await served_models(gateway)
    return ModelList(data=[served[name] for name in sorted(served)])


@router.get("/{model:path}", responses=_UNKNOWN)
async def retrieve_model(gateway: GatewayDep, model: str) -> Model:
    found = (await served_models(gateway)).get(model)
    if found is None:
        raise model_not_found(model)
    return found
