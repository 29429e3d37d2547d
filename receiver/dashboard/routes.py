"""`/admin`: the operator dashboard (server-rendered HTML, no JavaScript).

Each endpoint is wrapped by `receiver.dashboard.guard.page` (enabled? signed in? CSRF?).
Without `RELAY_ADMIN_TOKEN` every page answers **404** with a page saying how to enable it: the
dashboard does not exist then (the `/api` twin answers 401 `admin_disabled`).
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from receiver.config import Settings
from receiver.dashboard import files, forms, overview, views
from receiver.dashboard.guard import csrf_refused, message, page, read_form, store_unavailable
from receiver.dashboard.pages import STATIC, redactor_for, render
from receiver.dashboard.session import (
    AdminMiddleware,
    admin_token,
    csrf_ok,
    flash,
    is_logged_in,
    log_in,
    log_out,
)
from receiver.errors import StoreUnavailable, UpstreamError
from receiver.http.auth_limit import client_address, limiter_for, retry_after_s
from receiver.http.responses import BodyTooLarge
from receiver.services import Services
from receiver.states import DELIVERY_STATES, FAMILIES, TASK_STATES, DeliveryState
from receiver.submit import SubmitRefused, submit

__all__ = ["middleware", "routes"]

PAGE_SIZE = 25


def middleware(settings: Settings) -> Middleware:
    """Sessions and security headers, applied to `/admin*` only."""
    return Middleware(AdminMiddleware, settings=settings)


async def login(request: Request) -> Response:
    """The login form. Its CSRF token is a *pre-session* one: the GET stores a random token
    in the (signed) session cookie and in the form, and the POST must echo it. SameSite alone
    would not protect this POST, since there is no session cookie yet for the browser to
    withhold; a cross-site page cannot read the token, so it cannot log a browser in.

    Wrong tokens are counted per client address together with the `/api` bearer checks; past
    the limit the form answers 429 with `Retry-After` before it looks at the token
    (`receiver.http.auth_limit`)."""
    services: Services = request.app.state.services
    token = admin_token(services.settings)
    if token is None:
        return render(request, "disabled.html", 404)
    try:
        return await _login(request, token)
    except StoreUnavailable:
        return store_unavailable(request)


async def _login(request: Request, token: str) -> Response:
    next_page = forms.safe_back(request.query_params.get("next"))
    if request.method == "GET":
        if await is_logged_in(request, token):
            return RedirectResponse(next_page, status_code=303)
        return render(request, "login.html", next=next_page, error=None)
    try:
        form = await read_form(request)
    except BodyTooLarge:
        return message(request, 413, "Form too large", "Forms are limited to 64 KiB.")
    next_page = forms.safe_back(form.get("next"))
    limiter = limiter_for(request.app)
    address = client_address(request)
    wait = limiter.blocked_for(address)
    if wait is not None:
        return _too_many(request, next_page, retry_after_s(wait))
    if not csrf_ok(request, form.get("csrf")):
        return csrf_refused(request)
    presented = str(form.get("token", "")).strip()
    if not hmac.compare_digest(presented.encode(), token.encode()):
        limiter.failed(address)
        return render(
            request, "login.html", 401, next=next_page, error="That is not the admin token."
        )
    limiter.succeeded(address)
    await log_in(request, token)
    return RedirectResponse(next_page, status_code=303)


def _too_many(request: Request, next_page: str, seconds: int) -> Response:
    """429 on the login form, before the token is looked at (`receiver.http.auth_limit`)."""
    answer = render(
        request,
        "login.html",
        429,
        next=next_page,
        error=f"Too many failed sign-ins from your address. Try again in {seconds} s.",
    )
    answer.headers["Retry-After"] = str(seconds)
    return answer


async def logout(request: Request, services: Services, form: FormData) -> Response:
    """Ends the session for good: its id is revoked in the database, so a copy of the cookie
    is refused too, by every process."""
    await log_out(request)
    flash(request, "ok", "Signed out.")
    return RedirectResponse("/admin/login", status_code=303)


async def tasks_page(request: Request, services: Services, form: FormData) -> Response:
    """The first page: the overview charts, then the tasks the GET form's filter selects."""
    offset = _int(request.query_params.get("offset"), 0)
    chosen, error = forms.read_task_filter(request.query_params)
    reads = services.store.reads
    found = []
    if error is None:
        found = await reads.list_tasks(
            PAGE_SIZE + 1,
            offset,
            state=chosen.state or None,
            family=chosen.family or None,
            labels=chosen.labels,
            search=chosen.q or None,
        )
    shown = found[:PAGE_SIZE]
    redactor = redactor_for(services)
    events = await reads.events_for(task_refs=[t.id for t in shown]) if shown else []
    dead_count = await reads.count_deliveries(DeliveryState.DEAD)
    handlers = [h.name for h in services.handlers]
    charts = await overview.read_overview(reads, handlers, time.time()) if offset == 0 else None
    return render(
        request,
        "tasks.html",
        400 if error else 200,
        redactor=redactor,
        dead_count=dead_count,
        tasks=shown,
        songs=views.latest_songs(events, redactor),
        offset=offset,
        page_size=PAGE_SIZE,
        has_next=len(found) > PAGE_SIZE,
        chosen=chosen,
        filter_error=error,
        filtered=any((chosen.state, chosen.family, chosen.label, chosen.q)),
        states=TASK_STATES,
        families=FAMILIES,
        overview=charts,
    )


async def task_page(request: Request, services: Services, form: FormData) -> Response:
    task = await services.store.reads.task_detail(request.path_params["task_id"])
    if task is None:
        return message(request, 404, "No such task", "No task has that id.")
    redactor = redactor_for(services, *services.tokens.task_secrets(task.id))
    bodies = await services.store.reads.inbox_bodies(task.upstream_id) if task.upstream_id else []
    deliveries = [d for event in task.events for d in event.deliveries]
    return render(
        request,
        "task.html",
        redactor=redactor,
        task=task,
        labels=redactor.value(task.labels),
        songs=views.task_songs(task.events, redactor),
        timeline=views.timeline(task, redactor),
        payloads=views.payloads(task, bodies, redactor),
        landed={d.id: views.landings(d.result, redactor) for d in deliveries},
        downloads={d.id for d in deliveries if files.disk_copy(services, d) is not None},
    )


async def download(request: Request, services: Services, form: FormData) -> Response:
    """A disk copy of a task's song, streamed by the relay (`receiver.dashboard.files`)."""
    found = await files.task_file(
        services, request.path_params["task_id"], request.path_params["delivery_id"]
    )
    if found is None:
        text = "That delivery has no file on disk to download."
        return message(request, 404, "No such file", text)
    return FileResponse(found, filename=found.name)


async def deliveries_page(request: Request, services: Services, form: FormData) -> Response:
    state = request.query_params.get("state") or None
    state = state if state in DELIVERY_STATES else None
    handler = request.query_params.get("handler") or None
    offset = _int(request.query_params.get("offset"), 0)
    store = services.store
    dead = (
        await store.reads.list_deliveries(DeliveryState.DEAD, 500, 0, handler)
        if state in (None, DeliveryState.DEAD)
        else []
    )
    found = await store.reads.list_deliveries(state, PAGE_SIZE + 1, offset, handler)
    others = [d for d in found[:PAGE_SIZE] if d.state != DeliveryState.DEAD]
    rows = [*dead, *others] if state is None else found[:PAGE_SIZE]
    events = await store.reads.events_for(ids=list({d.event_id for d in rows}))
    redactor = redactor_for(services)
    refs = list({e.task_ref for e in events if e.task_ref})
    owners = {t.id: t for t in await store.reads.tasks_by_id(refs)}
    by_task = views.latest_songs(await store.reads.events_for(task_refs=refs), redactor)
    return render(
        request,
        "deliveries.html",
        redactor=redactor,
        rows=rows,
        dead_count=len(dead),
        events={e.id: e for e in events},
        titles={
            e.id: views.song_label(e, owners.get(str(e.task_ref)), by_task.get(str(e.task_ref), []))
            for e in events
        },
        state=state or "",
        handler=handler or "",
        handlers=[h.name for h in services.handlers],
        states=DELIVERY_STATES,
        offset=offset,
        page_size=PAGE_SIZE,
        has_next=len(found) > PAGE_SIZE,
    )


async def replay_delivery(request: Request, services: Services, form: FormData) -> Response:
    delivery_id = request.path_params["delivery_id"]
    if await services.store.replay(delivery_id=delivery_id):
        flash(request, "ok", "Delivery queued again; it runs in a moment.")
    elif await services.store.reads.get_delivery(delivery_id) is None:
        flash(request, "bad", "No delivery with that id.")
    else:
        flash(request, "warn", "That delivery is pending or running; nothing to replay.")
    return _back(form, "/admin/deliveries")


async def replay_event(request: Request, services: Services, form: FormData) -> Response:
    count = await services.store.replay(event_id=request.path_params["event_id"])
    if count:
        flash(request, "ok", f"{count} deliver{'y' if count == 1 else 'ies'} queued again.")
    else:
        flash(request, "warn", "No finished delivery of that event to replay.")
    return _back(form, "/admin/deliveries")


async def replay_dead(request: Request, services: Services, form: FormData) -> Response:
    handler = str(form.get("handler") or "") or None
    try:
        since = forms.parse_since(str(form.get("since") or ""))
    except forms.FormError as exc:
        flash(request, "bad", str(exc))
        return _back(form, "/admin/deliveries")
    count = await services.store.replay(handler=handler, dead_since=since)
    scope = f" of {handler}" if handler else ""
    flash(request, "ok" if count else "warn", f"{count} dead letter(s){scope} queued again.")
    return _back(form, "/admin/deliveries")


async def submit_page(request: Request, services: Services, form: FormData) -> Response:
    if request.method == "GET":
        return _submit_form(request, forms.SubmitForm(), None)
    fields = forms.read_submit_form(form)
    try:
        task = await submit(services, forms.submit_request(fields))
    except (forms.FormError, SubmitRefused) as exc:
        return _submit_form(request, fields, str(exc), 400)
    except UpstreamError as exc:
        status, text = forms.upstream_message(exc)
        return _submit_form(request, fields, text, status)
    flash(request, "ok", f"Submitted; the task is {task.state}.")
    return RedirectResponse(f"/admin/tasks/{task.id}", status_code=303)


def _submit_form(
    request: Request, fields: forms.SubmitForm, error: str | None, status: int = 200
) -> Response:
    return render(
        request, "submit.html", status, fields=fields, error=error, families=forms.FAMILIES
    )


async def stylesheet(request: Request) -> Response:
    return FileResponse(STATIC, media_type="text/css", headers={"Cache-Control": "max-age=300"})


def _back(form: FormData, default: str) -> Response:
    return RedirectResponse(forms.safe_back(form.get("back"), default), status_code=303)


def _int(value: Any, default: int) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return default


routes = [
    Route("/admin", page(tasks_page), methods=["GET"]),
    Route("/admin/login", login, methods=["GET", "POST"]),
    Route("/admin/logout", page(logout), methods=["POST"]),
    Route("/admin/static/app.css", stylesheet, methods=["GET"]),
    Route("/admin/tasks/{task_id}", page(task_page), methods=["GET"]),
    Route("/admin/tasks/{task_id}/download/{delivery_id}", page(download), methods=["GET"]),
    Route("/admin/deliveries", page(deliveries_page), methods=["GET"]),
    Route("/admin/deliveries/replay-dead", page(replay_dead), methods=["POST"]),
    Route("/admin/deliveries/{delivery_id}/replay", page(replay_delivery), methods=["POST"]),
    Route("/admin/events/{event_id}/replay", page(replay_event), methods=["POST"]),
    Route("/admin/submit", page(submit_page), methods=["GET", "POST"]),
]
