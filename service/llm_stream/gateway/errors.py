"""Every error the gateway answers, in OpenAI's shape and with OpenAI's status codes.

The ``openai`` client turns the status into its exception class (400 ``BadRequestError``, 401
``AuthenticationError``, 404 ``NotFoundError``, 413, ...) and reads ``error.message``, ``type``,
``param`` and ``code`` from the body, so FastAPI's own error bodies (``{"detail": ...}``) never
reach a client: validation errors, unknown routes and unexpected failures are mapped here.
The OpenAPI document lists the same answers (``error_responses``), so it tells the truth.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match

logger = logging.getLogger(__name__)

INVALID_REQUEST = "invalid_request_error"


class ErrorDetail(BaseModel):
    """Every field is always sent, ``param`` and ``code`` as null when they name nothing."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """``{"error": {"message", "type", "param", "code"}}``, as OpenAI answers errors."""

    error: ErrorDetail


#: Why the gateway answers each error status: the OpenAPI document's descriptions.
_WHY: dict[HTTPStatus, str] = {
    HTTPStatus.BAD_REQUEST: "A parameter is missing or invalid; `error.param` names it.",
    HTTPStatus.UNAUTHORIZED: "No API key, or not one of the gateway's.",
    HTTPStatus.FORBIDDEN: "The API key may not do this (it needs an admin key).",
    HTTPStatus.NOT_FOUND: "No object has the id given.",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "The request body or the uploaded file is too large.",
    HTTPStatus.TOO_MANY_REQUESTS: "Too many wrong API keys from this address; wait Retry-After.",
    HTTPStatus.INTERNAL_SERVER_ERROR: "The server had an error while processing the request.",
    HTTPStatus.SERVICE_UNAVAILABLE: "The broker does not answer: batches cannot be read now.",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}

#: What every API route may answer, whatever it does: the key check (401, 429), the body size
#: limit (413, ``middleware``) and an unexpected failure (500).
EVERY_ROUTE = (
    HTTPStatus.UNAUTHORIZED,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    HTTPStatus.TOO_MANY_REQUESTS,
    HTTPStatus.INTERNAL_SERVER_ERROR,
)


def error_responses(*statuses: HTTPStatus) -> dict[int | str, dict[str, Any]]:
    """A route's (or router's) OpenAPI ``responses`` for these statuses, in OpenAI's shape."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {"model": ErrorBody, "description": _WHY[status]}
        if status is HTTPStatus.TOO_MANY_REQUESTS:
            response["headers"] = _RETRY_AFTER
        responses[int(status)] = response
    return responses


class GatewayError(HTTPException):
    """An answer in OpenAI's error shape. An ``HTTPException``, so FastAPI passes it through
    even when it is raised while the request body is being read (the size limit)."""

    def __init__(
        self,
        status: HTTPStatus,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = INVALID_REQUEST,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.body = ErrorBody(error=ErrorDetail(message=message, type=type, param=param, code=code))

    def response(self) -> JSONResponse:
        return JSONResponse(
            self.body.model_dump(), status_code=self.status_code, headers=self.headers
        )


def invalid(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(HTTPStatus.BAD_REQUEST, message, param=param, code=code)


def not_found(kind: str, object_id: str, param: str = "id") -> GatewayError:
    """OpenAI's message for an id that names nothing, e.g. ``No such File object: file-x``."""
    return GatewayError(HTTPStatus.NOT_FOUND, f"No such {kind} object: {object_id}", param=param)


def model_not_found(model: str) -> GatewayError:
    """OpenAI's answer for a model that does not exist (here: no live worker serves it)."""
    return GatewayError(
        HTTPStatus.NOT_FOUND,
        f"The model '{model[:256]}' does not exist",
        param="model",
        code="model_not_found",
    )


def too_large(message: str) -> GatewayError:
    return GatewayError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, message, code="request_too_large")


def unauthorized(message: str, code: str | None) -> GatewayError:
    return GatewayError(HTTPStatus.UNAUTHORIZED, message, code=code)


def too_many_failures(retry_after_s: int) -> GatewayError:
    """OpenAI's rate-limit answer, for a client that sent too many wrong keys; ``openai``
    waits ``Retry-After`` before it retries."""
    return GatewayError(
        HTTPStatus.TOO_MANY_REQUESTS,
        f"Too many incorrect API keys from your address. Try again in {retry_after_s} s.",
        code="rate_limit_exceeded",
        type="requests",
        headers={"Retry-After": str(retry_after_s)},
    )


def _from_http_exception(request: Request, error: HTTPException) -> GatewayError:
    if isinstance(error, GatewayError):
        return error
    status = HTTPStatus(error.status_code)
    headers = dict(error.headers) if error.headers else None
    if status is HTTPStatus.NOT_FOUND:
        message = f"Invalid URL ({request.method} {request.url.path})"
    elif status is HTTPStatus.METHOD_NOT_ALLOWED:
        message = f"Method {request.method} is not allowed on {request.url.path}"
        headers = {"Allow": _allowed_methods(request)}
    else:
        message = str(error.detail)
    kind = "server_error" if status >= HTTPStatus.INTERNAL_SERVER_ERROR else INVALID_REQUEST
    return GatewayError(status, message, type=kind, headers=headers)


def _allowed_methods(request: Request) -> str:
    """A 405's ``Allow``: the methods of every route at the path (Starlette names only those of
    the first route it tried, e.g. ``POST`` for ``/v1/batches``, which ``GET`` lists too)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] is Match.PARTIAL:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def from_validation_error(error: RequestValidationError) -> GatewayError:
    """The first problem, named by its parameter as OpenAI names it (``purpose``, ``limit``)."""
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return invalid("We could not parse the JSON body of your request.", None, "invalid_json")
    names = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    param = names[0] if names else None
    if first.get("type") == "missing" and param is None:
        return invalid("The request has no body: send its parameters as JSON.")
    if first.get("type") == "missing":
        return invalid(
            f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
        )
    if first.get("type") == "extra_forbidden":
        return invalid(
            f"Unrecognized request argument supplied: {param}", param, "unknown_parameter"
        )
    where = f"'{'.'.join(names)}'" if names else "the request body"
    return invalid(f"Invalid value for {where}: {first.get('msg')}", param, "invalid_value")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in OpenAI's shape, and document no other."""
    _drop_validation_422(app)

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        return _from_http_exception(request, error).response()

    async def validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return from_validation_error(error).response()

    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        failure = GatewayError(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            "The server had an error while processing your request.",
            type="server_error",
        )
        return failure.response()

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)


def _drop_validation_422(app: FastAPI) -> None:
    """FastAPI documents a 422 ``{"detail": ...}`` on every route with parameters; the gateway
    answers those errors 400 in OpenAI's shape (``from_validation_error``), as its routes
    document, so the 422 and its schemas leave the document."""
    generate = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema or {}

    app.openapi = document  # type: ignore[method-assign]
