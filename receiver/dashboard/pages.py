"""Rendering: one Jinja environment, autoescaped, whose every `{{ … }}` passes the redactor.

Templates live in `templates/admin/` beside this module. The `finalize` hook scrubs each printed
string with the page's `Redactor`, so a secret that slips into an error message or a payload is
hidden even if a view forgot to redact it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse

from receiver.dashboard.charts import number
from receiver.dashboard.session import csrf_token, pop_flash
from receiver.dashboard.views import requester
from receiver.redact import Redactor
from receiver.services import Services
from receiver.states import DeliveryState, EventKind, TaskState

__all__ = ["STATIC", "TEMPLATES", "redactor_for", "render"]

TEMPLATES = Path(__file__).resolve().parent / "templates" / "admin"
STATIC = TEMPLATES / "app.css"

BADGES: dict[str, str] = {
    TaskState.SUCCEEDED: "ok",  # and a delivery's, an attempt's
    "completed": "ok",
    EventKind.COMPLETED: "ok",
    TaskState.FAILED: "bad",  # and an attempt's
    DeliveryState.DEAD: "bad",
    EventKind.FAILED: "bad",
    TaskState.UNKNOWN: "warn",
    TaskState.TIMED_OUT: "warn",
    EventKind.TIMED_OUT: "warn",
    TaskState.RUNNING: "busy",  # and a delivery's, an attempt's
    TaskState.STREAMING: "busy",
    EventKind.STREAMING: "busy",
}
"""State → badge colour class; anything else (submitted, pending, …) is neutral blue."""


@jinja2.pass_context
def _finalize(context: jinja2.runtime.Context, value: Any) -> Any:
    redactor = context.get("redactor")
    if isinstance(value, Markup) and isinstance(redactor, Redactor):
        # Markup built by our code (the charts): scrubbing a secret out keeps it valid markup.
        return Markup(redactor.text(str(value)))  # noqa: S704 - already-escaped markup
    if isinstance(value, str) and isinstance(redactor, Redactor):
        return redactor.text(value)
    return "" if value is None else value


def _when(value: float | None) -> str:
    if not value:
        return ""
    return datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _clock(value: float | None) -> str:
    """Time of day to the millisecond: a timeline's steps are often within one second."""
    if not value:
        return ""
    return datetime.fromtimestamp(value, tz=UTC).strftime("%H:%M:%S.%f")[:-3]


def _ago(value: float | None) -> str:
    if not value:
        return ""
    seconds = max(0, int(time.time() - value))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _duration(value: Any) -> str:
    if not isinstance(value, int | float) or value <= 0:
        return ""
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes}:{seconds:02d}"


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    finalize=_finalize,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(when=_when, clock=_clock, ago=_ago, duration=_duration, number=number)
_env.globals["badge"] = lambda state: BADGES.get(str(state), "info")
_env.globals["requester"] = requester  # a chat task's "Requested by … in Slack" line


def redactor_for(services: Services, *extra: str) -> Redactor:
    """Hides the settings' secrets (and `extra` values) on one page."""
    return Redactor([*services.secret_values(), *extra])


def render(
    request: Request,
    template: str,
    status: int = 200,
    *,
    redactor: Redactor | None = None,
    **context: Any,
) -> HTMLResponse:
    """The page, with the CSRF token and any flash message; headers come from the middleware."""
    services: Services = request.app.state.services
    html = _env.get_template(template).render(
        request_path=request.url.path,
        back=_back(request),
        csrf=lambda: csrf_token(request),  # a call, so pages without forms set no cookie
        flash=pop_flash(request) if "session" in request.scope else None,
        redactor=redactor or redactor_for(services),
        **context,
    )
    return HTMLResponse(html, status_code=status)


def _back(request: Request) -> str:
    """This page's path and query, for a form that wants to come back here after a POST."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")
