"""OpenAI's cursor pagination, once for files and batches: ``after`` is the id of the last
object of the previous page; the items come already in the order the list is served in.
``page_of`` makes a page of what a source paged itself (the files' index)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import TypeVar

from llm_stream.gateway.errors import GatewayError
from llm_stream.gateway.models import ListPage

T = TypeVar("T")


def page_of(items: Sequence[T], *, limit: int, id_of: Callable[[T], str]) -> ListPage[T]:
    """The page of the first ``limit`` of ``items``: a source that pages by itself is asked
    for one item more than the page, and that one tells whether more follow."""
    data = list(items[:limit])
    return ListPage[T](
        data=data,
        first_id=id_of(data[0]) if data else None,
        last_id=id_of(data[-1]) if data else None,
        has_more=len(items) > limit,
    )


def unknown_after(after: str) -> GatewayError:
    """An ``after`` that names no object: 404, as any id that names nothing (the request is
    well formed, the object is missing), not answered with a page that silently skips."""
    message = f"No object with id '{after}' to list after"
    return GatewayError(HTTPStatus.NOT_FOUND, message, param="after")
