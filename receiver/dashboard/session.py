"""The dashboard's session: a signed cookie, login state, CSRF tokens, flash messages, headers.

The cookie is Starlette's `SessionMiddleware` (itsdangerous-signed, readable but not forgeable),
scoped to `/admin`, HttpOnly, SameSite=lax, Secure when the public URL is https. Its key is
derived from `RELAY_SECRET_KEY` for this one purpose, so a leaked session key could not sign
callback tokens. A session is bound to the admin token by a keyed fingerprint: rotating
`RELAY_ADMIN_TOKEN` logs everyone out. It also carries a random session id that the database
knows (`receiver.store.sessions`): logout revokes it, so a copy of the cookie is refused from
then on by every process, and a session ends 12 h after sign-in however often it is used.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from receiver.config import Settings
from receiver.services import Services
from receiver.store import Store

__all__ = [
    "SESSION_MAX_AGE_S",
    "AdminMiddleware",
    "admin_token",
    "csrf_ok",
    "csrf_token",
    "flash",
    "is_logged_in",
    "log_in",
    "log_out",
    "pop_flash",
    "session_key",
]

SESSION_MAX_AGE_S = 12 * 3600
COOKIE = "relay_admin"
PREFIX = "/admin"


def session_key(settings: Settings) -> str:
    """HMAC(secret key, purpose): never the raw key, which also signs callback tokens."""
    key = settings.secret_keys[0].encode()
    return hmac.new(key, b"aimusic-relay admin-session", hashlib.sha256).hexdigest()


def admin_token(settings: Settings) -> str | None:
    """`RELAY_ADMIN_TOKEN`, or None when unset or empty (the dashboard is then disabled)."""
    token = settings.relay_admin_token
    value = token.get_secret_value().strip() if token is not None else ""
    return value or None


def security_headers(settings: Settings) -> list[tuple[bytes, bytes]]:
    """Sent with every /admin response. No script at all; the stylesheet is a same-origin file.

    Covers and audio come from the provider's URLs, so img/media allow https:. Plain http: is
    allowed only when the relay itself is served over http (local runs against the sandbox):
    an https page could not load http media anyway, and should not ask to.
    """
    media = "https:" if settings.public_url.startswith("https:") else "https: http:"
    policy = (
        "default-src 'none'; style-src 'self'; "
        f"img-src 'self' data: {media}; media-src {media}; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    return [
        (b"content-security-policy", policy.encode()),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]


class AdminMiddleware:
    """Sessions and security headers for `/admin*` only: the webhook hot path pays nothing."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.sessions = SessionMiddleware(
            app,
            secret_key=session_key(settings),
            session_cookie=COOKIE,
            max_age=SESSION_MAX_AGE_S,
            path=PREFIX,
            same_site="lax",
            https_only=settings.public_url.startswith("https:"),
        )
        self.headers = security_headers(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers:
                    headers[name.decode()] = value.decode()
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.sessions(scope, receive, send_with_headers)


def _fingerprint(request: Request, token: str) -> str:
    settings: Settings = request.app.state.services.settings
    key = session_key(settings).encode()
    return hmac.new(key, b"admin-token:" + token.encode(), hashlib.sha256).hexdigest()[:32]


def _store(request: Request) -> Store:
    services: Services = request.app.state.services
    return services.store


async def is_logged_in(request: Request, token: str) -> bool:
    """True when the session was opened with the current admin token, and the database says
    it is still open (not signed out, less than 12 h since sign-in). Raises
    `StoreUnavailable` when the database cannot say."""
    held = request.session.get("auth")
    if not isinstance(held, str) or not hmac.compare_digest(held, _fingerprint(request, token)):
        return False
    session_id = request.session.get("sid")
    if not isinstance(session_id, str) or not session_id:
        return False  # a cookie from before sessions were stored: sign in again
    return await _store(request).sessions.is_open(session_id, SESSION_MAX_AGE_S)


async def log_in(request: Request, token: str) -> None:
    """A fresh session (no fixation: nothing from before login survives) with a new CSRF token,
    recorded in the database before the cookie is sent."""
    session_id = secrets.token_urlsafe(32)
    await _store(request).sessions.open(session_id, SESSION_MAX_AGE_S)
    request.session.clear()
    request.session["auth"] = _fingerprint(request, token)
    request.session["sid"] = session_id
    request.session["csrf"] = secrets.token_urlsafe(32)


async def log_out(request: Request) -> None:
    """End this session for good: revoked in the database (every copy of the cookie with it),
    then cleared from this browser."""
    session_id = request.session.get("sid")
    if isinstance(session_id, str) and session_id:
        await _store(request).sessions.revoke(session_id)
    request.session.clear()


def csrf_token(request: Request) -> str:
    """This session's CSRF token, created on first use (before login too: the login form's)."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def csrf_ok(request: Request, presented: Any) -> bool:
    """The form's hidden `csrf` field matches the session's token."""
    held = request.session.get("csrf")
    if not isinstance(held, str) or not held or not isinstance(presented, str):
        return False
    return hmac.compare_digest(held.encode(), presented.encode())


def flash(request: Request, kind: str, text: str) -> None:
    """A message for the next page (after a 303 redirect)."""
    request.session["flash"] = [kind, text]


def pop_flash(request: Request) -> tuple[str, str] | None:
    held = request.session.pop("flash", None)
    if isinstance(held, list) and len(held) == 2:
        return str(held[0]), str(held[1])
    return None
