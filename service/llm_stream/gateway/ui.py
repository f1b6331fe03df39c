"""The gateway's web page (``/ui``): the batches, one batch's lines, cancel and downloads.

Server-rendered (Jinja2, autoescaped) with one small script that polls ``/ui/progress`` while
batches run; no front-end build. Every rule is the API's own: the routes call the Batches and
Files API's functions for listing, retrieving, cancelling and file content, and the login
checks keys as the API does (``ui_auth``).
"""

from __future__ import annotations

import re
from http import HTTPStatus
from importlib.resources import files
from typing import Annotated, Any, Literal

import jinja2
from fastapi import APIRouter, FastAPI, Form, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from llm_stream.contracts import is_safe_batch_id
from llm_stream.gateway import batches_api, files_api, judgements_api, ui_auth
from llm_stream.gateway.callers import Caller
from llm_stream.gateway.errors import GatewayError, from_validation_error
from llm_stream.gateway.middleware import client_address
from llm_stream.gateway.review_lines import review_page
from llm_stream.gateway.state import Gateway, GatewayDep
from llm_stream.gateway.ui_lines import read_page, results_so_far
from llm_stream.gateway.ui_view import BatchView, iso, when

PREFIX = "/ui"
#: Batch ids the page may poll at once: one list page's worth.
MAX_POLLED = batches_api.MAX_BATCHES_PAGE

#: No inline script or style anywhere: a custom_id or metadata value that slips past escaping
#: still cannot run. Forms post to this site only; no other site may frame the page.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("llm_stream.gateway", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_environment.filters["when"] = when
_environment.filters["iso"] = iso
templates = Jinja2Templates(env=_environment)

router = APIRouter(prefix=PREFIX, include_in_schema=False)


class _LoginRequiredError(Exception):
    """Raised by a route whose request has no valid session: answered with the login page."""


def _guard(request: Request, gateway: Gateway) -> Caller:
    """Whose page this is: the signed-in key's caller (its project's batches only, every
    project's for an admin key); a request without a session gets the login page."""
    caller = ui_auth.session_caller(request, gateway)
    if caller is None:
        raise _LoginRequiredError
    return caller


def _page(
    request: Request,
    gateway: Gateway,
    template: str,
    context: dict[str, Any],
    status: int = HTTPStatus.OK,
) -> Response:
    """A rendered page with the form token and security headers every page carries."""
    token = ui_auth.csrf_token(request)
    shared = {
        "csrf_field": ui_auth.CSRF_FIELD,
        "csrf_token": token,
        "can_log_out": ui_auth.login_needed(gateway) and ui_auth.signed_in(request, gateway),
    }
    response = templates.TemplateResponse(
        request, template, {**shared, **context}, status_code=status, headers=SECURITY_HEADERS
    )
    ui_auth.keep_csrf(response, request, token)
    return response


def _problem(request: Request, gateway: Gateway, error: GatewayError) -> Response:
    context = {"title": HTTPStatus(error.status_code).phrase, "message": error.body.error.message}
    return _page(request, gateway, "problem.html", context, status=error.status_code)


def _refused_post(request: Request, gateway: Gateway) -> Response:
    message = "This form is out of date or came from another site: reload the page and retry."
    context = {"title": "Form refused", "message": message}
    return _page(request, gateway, "problem.html", context, status=HTTPStatus.FORBIDDEN)


def _login_page(
    request: Request,
    gateway: Gateway,
    next_path: str,
    error: str | None = None,
    status: int = HTTPStatus.UNAUTHORIZED,
) -> Response:
    context = {"next_path": _local(next_path), "error": error}
    return _page(request, gateway, "login.html", context, status=status)


def _held_back(
    request: Request,
    gateway: Gateway,
    next_path: str,
    retry_after_s: int,
    *,
    wrong_keys: bool = True,
) -> Response:
    """The login form again, 429: this address sent too many wrong keys (``auth_limit``), or
    too many attempts in a minute (``rate_limit``)."""
    reason = "wrong keys" if wrong_keys else "sign-in attempts"
    error = f"Too many {reason} from your address: try again in {retry_after_s} s."
    status = HTTPStatus.TOO_MANY_REQUESTS
    response = _login_page(request, gateway, next_path, error=error, status=status)
    response.headers["Retry-After"] = str(retry_after_s)
    return response


def _local(path: str) -> str:
    """Where to go after logging in: a page of this site, never another (no open redirect)."""
    if path.startswith(PREFIX) and not path.startswith("//") and "\\" not in path:
        return path
    return PREFIX


@router.get("")
async def batch_list(
    request: Request,
    gateway: GatewayDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=batches_api.MAX_BATCHES_PAGE)] = (
        batches_api.DEFAULT_BATCHES_PAGE
    ),
) -> Response:
    caller = _guard(request, gateway)
    try:
        page = await batches_api.list_batches(gateway, caller, after=after, limit=limit)
    except GatewayError as error:
        return _problem(request, gateway, error)
    context = {
        "batches": [BatchView(batch) for batch in page.data],
        "next_after": page.last_id if page.has_more else None,
        "first_page": after is None,
        "limit": limit,
    }
    return _page(request, gateway, "batches.html", context)


@router.get("/batches/{batch_id}")
async def batch_page(
    request: Request,
    gateway: GatewayDep,
    batch_id: str,
    lines: Literal["output", "error"] = "output",
    q: Annotated[str, Query(max_length=200)] = "",
    page: Annotated[int, Query(ge=1)] = 1,
) -> Response:
    caller = _guard(request, gateway)
    try:
        batch = await batches_api.retrieve_batch(gateway, caller, batch_id)
    except GatewayError as error:
        return _problem(request, gateway, error)
    file_id = batch.output_file_id if lines == "output" else batch.error_file_id
    shown, missing, so_far = None, None, None
    view = BatchView(batch)
    if file_id is None and not view.terminal:
        try:
            so_far = await results_so_far(gateway, batch.id, batch.created_at)
        except GatewayError as error:  # the page still shows the batch without them
            missing = error.body.error.message
    reviewed = None
    if file_id is not None:
        try:
            if lines == "output":  # reviewed: judgements and schema checks with each line
                reviewed = await review_page(gateway, caller, batch, search=q, page=page)
                shown = reviewed.shown
            else:
                shown = await read_page(gateway, file_id, search=q, page=page, caller=caller)
        except GatewayError as error:
            missing = error.body.error.message
    context = {
        "view": view,
        "review": reviewed is not None,
        "judgements": reviewed.judgements if reviewed else {},
        "schema_error": reviewed.schema_error if reviewed else None,
        "lines": lines,
        "so_far": so_far,
        "file_id": file_id,
        "search": q,
        "shown": shown,
        "missing": missing,
    }
    return _page(request, gateway, "batch.html", context)


@router.get("/batches/{batch_id}/cancel")
async def confirm_cancel(request: Request, gateway: GatewayDep, batch_id: str) -> Response:
    caller = _guard(request, gateway)
    try:
        batch = await batches_api.retrieve_batch(gateway, caller, batch_id)
    except GatewayError as error:
        return _problem(request, gateway, error)
    return _page(request, gateway, "cancel.html", {"view": BatchView(batch)})


@router.post("/batches/{batch_id}/cancel")
async def cancel(
    request: Request,
    gateway: GatewayDep,
    batch_id: str,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    caller = _guard(request, gateway)
    if not ui_auth.post_is_ours(request, csrf_token):
        return _refused_post(request, gateway)
    try:
        batch = await batches_api.cancel_batch(gateway, caller, batch_id)
    except GatewayError as error:
        return _problem(request, gateway, error)
    return RedirectResponse(f"{PREFIX}/batches/{batch.id}", status_code=HTTPStatus.SEE_OTHER)


@router.post("/batches/{batch_id}/judgements/{custom_id}")
async def judge(
    request: Request,
    gateway: GatewayDep,
    batch_id: str,
    custom_id: Annotated[str, Path(min_length=1, max_length=512)],
    verdict: Annotated[Literal["accepted", "rejected", "gold"], Form()],
    corrected: Annotated[str, Form(max_length=1_000_000)] = "",
    note: Annotated[str, Form(max_length=10_000)] = "",
    back: Annotated[str, Form(max_length=2000)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """The review controls' form: the line's judgement, then back to the line."""
    caller = _guard(request, gateway)
    if not ui_auth.post_is_ours(request, csrf_token):
        return _refused_post(request, gateway)
    body = judgements_api.JudgementPut(
        verdict=verdict, corrected=corrected.strip() or None, note=note.strip() or None
    )
    try:
        await judgements_api.put_judgement(gateway, caller, batch_id, custom_id, body)
    except GatewayError as error:
        return _problem(request, gateway, error)
    target = _local(back) if back else f"{PREFIX}/batches/{batch_id}"
    return RedirectResponse(target, status_code=HTTPStatus.SEE_OTHER)


@router.get("/files/{file_id}/content")
async def download(request: Request, gateway: GatewayDep, file_id: str) -> Response:
    """The Files API's content, saved by the browser under the file's id."""
    caller = _guard(request, gateway)
    try:
        response = await files_api.file_content(gateway, caller, file_id)
    except GatewayError as error:
        return _problem(request, gateway, error)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", file_id)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.jsonl"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@router.get("/progress")
async def progress(
    request: Request,
    gateway: GatewayDep,
    batch_id: Annotated[list[str], Query(alias="id", max_length=MAX_POLLED)],
) -> JSONResponse:
    """Where the batches shown are now: what the page's script polls while they run."""
    caller = _guard(request, gateway)
    found = []
    for one in dict.fromkeys(batch_id):
        # Batches the page shows, so known: no look further (a request to the broker) per id.
        known = is_safe_batch_id(one)
        batch = await gateway.stream.retrieve(one, look_further=False) if known else None
        # None: deleted meanwhile, and the row stays as it was; another project's: not shown.
        if batch is not None and caller.sees(batch.project):
            found.append(BatchView(await batches_api.respond(gateway, batch)).progress())
    return JSONResponse({"batches": found}, headers={"Cache-Control": "no-store"})


@router.get("/login")
async def login_form(request: Request, gateway: GatewayDep, next: str = PREFIX) -> Response:
    if ui_auth.signed_in(request, gateway):
        return RedirectResponse(_local(next), status_code=HTTPStatus.SEE_OTHER)
    return _login_page(request, gateway, next)


@router.post("/login")
async def log_in(
    request: Request,
    gateway: GatewayDep,
    api_key: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
    next: Annotated[str, Form()] = PREFIX,
) -> Response:
    if not ui_auth.post_is_ours(request, csrf_token):
        return _refused_post(request, gateway)
    retry_after_s = ui_auth.login_retry_after(request, gateway)
    if retry_after_s is not None:
        return _held_back(request, gateway, next, retry_after_s)
    per_minute = gateway.settings.gateway_logins_per_minute
    attempt = await gateway.rate_limits.login(client_address(request.scope), per_minute)
    if attempt is not None and not attempt.allowed:
        return _held_back(request, gateway, next, attempt.retry_after_s, wrong_keys=False)
    response = RedirectResponse(_local(next), status_code=HTTPStatus.SEE_OTHER)
    if not ui_auth.log_in(response, request, gateway, api_key):
        return _login_page(request, gateway, next, error="That API key is not accepted.")
    return response


@router.post("/logout")
async def log_out(
    request: Request, gateway: GatewayDep, csrf_token: Annotated[str | None, Form()] = None
) -> Response:
    if not ui_auth.post_is_ours(request, csrf_token):
        return _refused_post(request, gateway)
    response = RedirectResponse(f"{PREFIX}/login", status_code=HTTPStatus.SEE_OTHER)
    ui_auth.log_out(response, request, gateway)
    return response


def install(app: FastAPI) -> None:
    """Serve the page under ``/ui`` (and send ``/`` there)."""
    app.include_router(router)
    static = StaticFiles(directory=str(files("llm_stream.gateway") / "static"))
    app.mount(f"{PREFIX}/static", static, name="ui-static")

    async def root() -> RedirectResponse:
        return RedirectResponse(PREFIX, status_code=HTTPStatus.FOUND)

    app.add_api_route("/", root, methods=["GET"], include_in_schema=False)

    async def login_required(request: Request, error: Exception) -> Response:
        gateway: Gateway = request.app.state.gateway
        if request.url.path == f"{PREFIX}/progress":
            return JSONResponse({"login": f"{PREFIX}/login"}, status_code=HTTPStatus.UNAUTHORIZED)
        next_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return _login_page(request, gateway, next_path)

    app.add_exception_handler(_LoginRequiredError, login_required)

    async def invalid_request(request: Request, error: Exception) -> Response:
        """A page asked with a bad value (``?page=0``) answers with a page saying so; the API
        and the page's own progress poll keep OpenAI's JSON error."""
        assert isinstance(error, RequestValidationError)
        problem = from_validation_error(error)
        path = request.url.path
        if (path.startswith(f"{PREFIX}/") and path != f"{PREFIX}/progress") or path == PREFIX:
            return _problem(request, request.app.state.gateway, problem)
        return problem.response()

    # Replaces the JSON-only handler that ``errors.install_error_handlers`` set.
    app.add_exception_handler(RequestValidationError, invalid_request)
