"""Who may see the web page, and which form posts are the page's own.

A browser cannot send the API's bearer header when it navigates, so the page asks for an API key
once (a login form) and keeps a session cookie instead. The cookie never holds the key: it holds
an expiry, a random session id and an HMAC of both keyed by the API key, so any replica with
the same keys accepts it, a key removed from the settings ends its sessions, and a stolen
cookie opens the page only (never ``/v1``) and only until it expires or its session logs out
(``revocations``). The key itself is checked by the API's own key ring (``keyring``), and
wrong keys count against the client's address as the API's do (``auth_limit``); with no keys
configured the page is as open as the API. The key that signed a session is its caller: the
page shows that key's project only, every project's to an admin key (``callers``).

Posts that change something (log in, cancel) carry a double-submit token: a random cookie the
page sets, echoed in a hidden field. A page on another site can neither read that cookie nor
send ours (``SameSite=Strict``), and a browser that says the post is cross-site is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import Request, Response

from llm_stream.gateway.callers import OPEN, Caller
from llm_stream.gateway.middleware import client_address
from llm_stream.gateway.state import Gateway

SESSION_COOKIE = "llm_stream_session"
CSRF_COOKIE = "llm_stream_csrf"
CSRF_FIELD = "csrf_token"
#: How long a login lasts before the key is asked for again.
SESSION_SECONDS = 12 * 3600
COOKIE_PATH = "/ui"
_SESSION_LABEL = b"llm-stream web page session:"


def login_needed(gateway: Gateway) -> bool:
    """The page needs a login exactly when the API needs a key."""
    return not gateway.keys.open


@dataclass(frozen=True)
class Session:
    """What a valid session cookie says: its id and when it expires (epoch seconds)."""

    id: str
    expires: int


def _signature(key: bytes, expires: int, session_id: str) -> str:
    signed = _SESSION_LABEL + f"{expires}.{session_id}".encode()
    return hmac.new(key, signed, hashlib.sha256).hexdigest()


def session_token(key: bytes, now: float | None = None) -> str:
    """A new session for ``key``: ``<expiry>.<session id>.<HMAC of both keyed by the key>``."""
    expires = int(now if now is not None else time.time()) + SESSION_SECONDS
    session_id = secrets.token_hex(16)
    return f"{expires}.{session_id}.{_signature(key, expires, session_id)}"


def session_of(
    token: str | None, keys: Sequence[bytes], now: float | None = None
) -> Session | None:
    """The session ``token`` stands for, if one of ``keys`` signed it and it has not expired."""
    found = _signed(token, keys, now)
    return None if found is None else found[0]


def _signed(
    token: str | None, keys: Sequence[bytes], now: float | None = None
) -> tuple[Session, int] | None:
    """The session ``token`` stands for and which of ``keys`` signed it (its place), if one
    did and the session has not expired. Every key is tried, each in constant time."""
    parts = (token or "").split(".")
    if len(parts) != 3:
        return None
    expires_text, session_id, signature = parts
    if not expires_text.isdigit() or not session_id.isalnum() or not signature:
        return None
    expires = int(expires_text)
    if expires <= (now if now is not None else time.time()):
        return None
    given = signature.encode()
    matches = [
        hmac.compare_digest(given, _signature(key, expires, session_id).encode()) for key in keys
    ]
    return (Session(session_id, expires), matches.index(True)) if any(matches) else None


def session_valid(token: str | None, keys: Sequence[bytes], now: float | None = None) -> bool:
    """Whether ``token`` came from one of ``keys`` and has not expired."""
    return session_of(token, keys, now) is not None


def signed_in(request: Request, gateway: Gateway) -> bool:
    """Whether ``request`` may see the page: a valid session, not logged out."""
    return session_caller(request, gateway) is not None


def session_caller(request: Request, gateway: Gateway) -> Caller | None:
    """Whose page this is: the caller of the key that signed the session (valid, not logged
    out); ``OPEN`` on a gateway without keys; None: not signed in."""
    if not login_needed(gateway):
        return OPEN
    granted = gateway.keys.granted()
    found = _signed(request.cookies.get(SESSION_COOKIE), [key for key, _ in granted])
    if found is None or found[0].id in gateway.revoked_sessions:
        return None
    return granted[found[1]][1]


def login_retry_after(request: Request, gateway: Gateway) -> int | None:
    """Seconds until this client may try a key again after too many wrong ones; else None."""
    return gateway.auth_failures.retry_after(client_address(request.scope))


def log_in(response: Response, request: Request, gateway: Gateway, api_key: str) -> bool:
    """Check ``api_key`` by the API's rule; if it is one, set the session cookie on
    ``response``, else count a wrong key against the client's address."""
    key = api_key.strip().encode()
    if not key or gateway.keys.caller(key) is None:
        gateway.auth_failures.failed(client_address(request.scope))
        return False
    _set_cookie(response, request, SESSION_COOKIE, session_token(key), SESSION_SECONDS)
    return True


def log_out(response: Response, request: Request, gateway: Gateway) -> None:
    """End the session on the server as well: its cookie, replayed, no longer opens the page."""
    keys = [key for key, _ in gateway.keys.granted()]
    session = session_of(request.cookies.get(SESSION_COOKIE), keys)
    if session is not None:
        gateway.revoked_sessions.revoke(session.id, session.expires)
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)


def csrf_token(request: Request) -> str:
    """The form token for this browser: its cookie's, or a new one (see ``keep_csrf``)."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and len(existing) >= 32 and existing.isalnum():
        return existing
    return secrets.token_hex(32)


def keep_csrf(response: Response, request: Request, token: str) -> None:
    """Set the form token's cookie when the browser does not have it yet."""
    if request.cookies.get(CSRF_COOKIE) != token:
        _set_cookie(response, request, CSRF_COOKIE, token, max_age=None)


def post_is_ours(request: Request, submitted: str | None) -> bool:
    """Whether a form post came from this site's own page (see the module docstring)."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode())


def _set_cookie(
    response: Response, request: Request, name: str, value: str, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
