"""Every error the gateway answers, in OpenAI's shape and with OpenAI's status codes.

The ``openai`` client turns the status into its exception class (400 ``BadRequestError``, 401
``AuthenticationError``, 404 ``NotFoundError``, 413, ...) and reads ``error.message``, ``type``,
``param`` and ``code`` from the body, so FastAPI's own error bodies (``{"detail": ...}``) never
reach a client: validation errors, unknown routes and unexpected failures are mapped here.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

logger = logging.getLogger(__name__)

INVALID_REQUEST = "invalid_request_error"


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """``{"error": {"message", "type", "param", "code"}}``, as OpenAI answers errors."""

    error: ErrorDetail


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
    if status is HTTPStatus.NOT_FOUND:
        message = f"Invalid URL ({request.method} {request.url.path})"
    elif status is HTTPStatus.METHOD_NOT_ALLOWED:
        message = f"Method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(error.detail)
    kind = "server_error" if status >= HTTPStatus.INTERNAL_SERVER_ERROR else INVALID_REQUEST
    return GatewayError(status, message, type=kind)


def from_validation_error(error: RequestValidationError) -> GatewayError:
    """The first problem, named by its parameter as OpenAI names it (``purpose``, ``limit``)."""
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return invalid("We could not parse the JSON body of your request.", None, "invalid_json")
    names = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    param = names[0] if names else None
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
    """Answer every error in OpenAI's shape."""

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
