"""The gate in front of every dashboard page: enabled, signed in, CSRF-checked, bounded.

Without `RELAY_ADMIN_TOKEN` a page is a 404 saying how to enable the dashboard; signed out (or
signed out elsewhere: the session is checked in the database), a 303 to the login form (for a
POST too: nothing is done); a POST whose CSRF token is missing or wrong, a 403. Forms are read
with a 64 KiB limit before anything else. A database that cannot be reached is a 503 page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, quote

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from receiver.dashboard.forms import safe_back
from receiver.dashboard.pages import render
from receiver.dashboard.session import admin_token, csrf_ok, is_logged_in
from receiver.errors import StoreUnavailable
from receiver.http.responses import BodyTooLarge, read_body
from receiver.services import Services

__all__ = [
    "MAX_FORM_BYTES",
    "Page",
    "csrf_refused",
    "message",
    "page",
    "read_form",
    "store_unavailable",
]

Page = Callable[[Request, Services, FormData], Awaitable[Response]]
"""A dashboard endpoint: the request, the app's services and the (checked) form."""

MAX_FORM_BYTES = 64 * 1024


async def read_form(request: Request) -> FormData:
    """A url-encoded form, at most 64 KiB (the login form is reachable by anyone)."""
    if request.method != "POST":
        return FormData()
    services: Services = request.app.state.services
    raw = await read_body(request, MAX_FORM_BYTES, services.settings.relay_body_timeout_s)
    pairs: list[tuple[str, str | UploadFile]] = []
    pairs.extend(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    return FormData(pairs)


def message(request: Request, status: int, title: str, text: str) -> Response:
    return render(request, "message.html", status, title=title, text=text)


def page(endpoint: Page) -> Callable[[Request], Awaitable[Response]]:
    """Enabled? Signed in? (For a POST: a valid CSRF token?) Then the page; outages → 503."""

    async def guarded(request: Request) -> Response:
        services: Services = request.app.state.services
        token = admin_token(services.settings)
        if token is None:
            return render(request, "disabled.html", 404)
        try:
            if not await is_logged_in(request, token):
                back = request.url.path if request.method == "GET" else "/admin"
                next_page = quote(safe_back(back), safe="/")
                return RedirectResponse(f"/admin/login?next={next_page}", status_code=303)
            try:
                form = await read_form(request)
            except BodyTooLarge:
                return message(request, 413, "Form too large", "Forms are limited to 64 KiB.")
            if request.method == "POST" and not csrf_ok(request, form.get("csrf")):
                return csrf_refused(request)
            return await endpoint(request, services, form)
        except StoreUnavailable:
            return store_unavailable(request)

    return guarded


def store_unavailable(request: Request) -> Response:
    return message(request, 503, "Storage unavailable", "The database cannot be reached; retry.")


def csrf_refused(request: Request) -> Response:
    return message(
        request,
        403,
        "Form expired",
        "This form's security token is missing or out of date, so nothing was done. "
        "Go back, reload the page and try again.",
    )
