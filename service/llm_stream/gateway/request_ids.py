"""Every HTTP answer names its request: ``X-Request-ID``, the caller's when it sends a usable
one, else a new ``req_...`` id (OpenAI answers with the same header, which its client exposes
as ``_request_id``). The id is on every log line of the request (``request_id`` in JSON logs)
and on the batch's submit span, so an SRE goes from a client's error to the logs and spans."""

from __future__ import annotations

import logging
import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_stream.ops.logs import REQUEST_ID

HEADER = "x-request-id"
#: What a caller's id may be: short, printable, no spaces (it goes into logs and headers).
_USABLE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

logger = logging.getLogger(__name__)


def request_id_of(sent: str | None) -> str:
    """The caller's id when usable, else a new one."""
    if sent is not None and _USABLE.fullmatch(sent):
        return sent
    return f"req_{uuid.uuid4().hex}"


class RequestIds:
    """Sets the request's id for its handling and puts it on the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next(
            (
                value.decode("latin-1")
                for name, value in scope["headers"]
                if name == b"x-request-id"
            ),
            None,
        )
        request_id = request_id_of(sent)
        token = REQUEST_ID.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
                if message["status"] >= 500:
                    logger.warning("answered %d to %s", message["status"], scope["path"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
