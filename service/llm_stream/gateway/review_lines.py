"""The lines under review: a page of a batch's output lines, each with its judgement and
whether its answer validates against its schema.

What the web page's review view shows and ``GET /v1/batches/{id}/review`` answers, made here
once. A line's schema is decided by ``curation.schemas.line_schema`` (the request's
``response_format``, else the batch metadata's ``schema`` name), as export decides it; the
answer checked is the one export would write (the reviewer's correction, else the model's).
Only the page's lines are checked: their requests are picked out of the input file as it
streams past (a line without ``json_schema`` in it is not even parsed), so memory holds a page
of requests whatever the batch's size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson

from llm_stream.contracts import Judgement
from llm_stream.curation import schemas
from llm_stream.gateway import files_api
from llm_stream.gateway.callers import Caller
from llm_stream.gateway.errors import GatewayError
from llm_stream.gateway.models import Batch
from llm_stream.gateway.state import Gateway
from llm_stream.gateway.ui_lines import LinesPage, lines_of, read_page


@dataclass(frozen=True)
class ReviewPage:
    """A page of output lines, each with ``schema_problems`` set where it has a schema."""

    shown: LinesPage
    #: The page's lines' judgements, by custom_id.
    judgements: dict[str, Judgement]
    #: Why the batch's named schema cannot be used (its lines are then left unchecked).
    schema_error: str | None


async def review_page(
    gateway: Gateway, caller: Caller, batch: Batch, *, search: str, page: int
) -> ReviewPage:
    """Page ``page`` of ``batch``'s output lines (``ui_lines.read_page``), checked. Raises the
    Files API's 404 when the batch has no output file (yet)."""
    if batch.output_file_id is None:
        message = f"Batch {batch.id} has no output file yet: its lines are reviewed once it ends"
        raise GatewayError(HTTPStatus.NOT_FOUND, message)
    shown = await read_page(gateway, batch.output_file_id, search=search, page=page, caller=caller)
    ids = [line.custom_id for line in shown.lines]
    judgements = gateway.judgements.of_lines(batch.id, ids)
    requests = await _requests(gateway, caller, batch.id, set(ids))
    name = schemas.metadata_schema(batch.metadata)
    folder = gateway.settings.schemas_dir
    checked, schema_error = [], None
    for line in shown.lines:
        judged = judgements.get(line.custom_id)
        answer = judged.corrected if judged and judged.corrected is not None else line.answer
        try:
            schema = schemas.line_schema(requests.get(line.custom_id), name, folder)
        except schemas.SchemaNotFoundError as error:
            schema, schema_error = None, f"the batch's metadata names a schema: {error}"
        problems = None if schema is None else schemas.answer_problems(schema, answer)
        checked.append(dataclasses.replace(line, schema_problems=problems))
    return ReviewPage(dataclasses.replace(shown, lines=checked), judgements, schema_error)


async def _requests(
    gateway: Gateway, caller: Caller, batch_id: str, wanted: Collection[str]
) -> dict[str, dict[str, Any]]:
    """The request bodies of ``wanted`` lines that carry a ``json_schema`` response format,
    from the upload the batch was created from (none: a batch submitted another way, or
    whose upload is gone; its lines fall to the named schema)."""
    upload = (await gateway.input_links.of([batch_id])).get(batch_id)
    if upload is None or not wanted:
        return {}
    try:
        content = await files_api.file_content(gateway, caller, upload)
    except GatewayError:
        return {}
    found: dict[str, dict[str, Any]] = {}
    async for raw in lines_of(content):
        if b"json_schema" not in raw:
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(line, dict) or line.get("custom_id") not in wanted:
            continue
        body = line.get("body")
        if isinstance(body, dict):
            found[str(line["custom_id"])] = body
            if len(found) == len(wanted):
                break  # the page's lines all found: the rest of the file is not read
    return found
