"""`/api/*`: submit and inspect, behind `Authorization: Bearer <RELAY_ADMIN_TOKEN>`."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.errors import (
    InsufficientCredits,
    RateLimited,
    StoreUnavailable,
    TaskGone,
    Unauthorized,
    UpstreamError,
    UpstreamForbidden,
    UpstreamRejected,
)
from receiver.routes._http import BodyTooLarge, error, present, read_body, require_admin
from receiver.services import Services
from receiver.submit import SubmitRefused, SubmitRequest, submit

__all__ = ["routes"]

Endpoint = Callable[[Request, Services], Awaitable[Response]]

_UPSTREAM_STATUS: list[tuple[type[UpstreamError], int, str]] = [
    (UpstreamRejected, 400, "upstream_rejected"),
    (InsufficientCredits, 402, "insufficient_credits"),
    (UpstreamForbidden, 403, "upstream_forbidden"),
    (TaskGone, 410, "gone"),
    (RateLimited, 429, "rate_limited"),
    (Unauthorized, 502, "upstream_unauthorized"),
]


def admin(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """Check the bearer token, then call `endpoint`; store outages become 503."""

    async def guarded(request: Request) -> Response:
        services: Services = request.app.state.services
        token = services.settings.relay_admin_token
        refused = require_admin(request, token.get_secret_value() if token else None)
        if refused is not None:
            return refused
        try:
            return await endpoint(request, services)
        except StoreUnavailable:
            return error(503, "store_unavailable", "storage is unavailable; retry later")

    return guarded


async def create_task(request: Request, services: Services) -> Response:
    try:
        raw = await read_body(request, services.settings.relay_max_body_bytes)
        body = SubmitRequest.model_validate(json.loads(raw))
    except BodyTooLarge:
        return error(413, "too_large", "request body too large")
    except ValueError as exc:
        detail = _validation_detail(exc) if isinstance(exc, ValidationError) else "body is not JSON"
        return error(400, "bad_request", detail)
    try:
        task = await submit(services, body)
    except SubmitRefused as exc:
        return error(400, "bad_request", str(exc))
    except UpstreamError as exc:
        return _upstream_error(exc)
    return JSONResponse(present(task), status_code=202)


async def list_tasks(request: Request, services: Services) -> Response:
    limit, offset = _paging(request)
    return JSONResponse(present(await services.store.list_tasks(limit, offset)))


async def get_task(request: Request, services: Services) -> Response:
    task = await services.store.task_detail(request.path_params["task_id"])
    if task is None:
        return error(404, "not_found", "no task with that id")
    return JSONResponse(present(task))


async def list_events(request: Request, services: Services) -> Response:
    limit, offset = _paging(request)
    return JSONResponse(present(await services.store.list_events(limit, offset)))


async def list_deliveries(request: Request, services: Services) -> Response:
    limit, offset = _paging(request)
    state = request.query_params.get("state")
    handler = request.query_params.get("handler")
    found = await services.store.list_deliveries(state, limit, offset, handler=handler)
    return JSONResponse(present(found))


async def replay_delivery(request: Request, services: Services) -> Response:
    delivery_id = request.path_params["delivery_id"]
    if await services.store.replay(delivery_id=delivery_id):
        return JSONResponse({"replayed": 1}, status_code=202)
    if await services.store.get_delivery(delivery_id) is None:
        return error(404, "not_found", "no delivery with that id")
    return error(409, "in_progress", "the delivery is pending or running; nothing to replay")


async def replay_event(request: Request, services: Services) -> Response:
    count = await services.store.replay(event_id=request.path_params["event_id"])
    if not count:
        return error(404, "not_found", "no finished delivery for that event id")
    return JSONResponse({"replayed": count}, status_code=202)


async def replay_dead(request: Request, services: Services) -> Response:
    """Bulk: every dead letter, optionally of one handler and/or since a unix time."""
    handler = request.query_params.get("handler")
    try:
        since = float(request.query_params.get("since", "0"))
    except ValueError:
        return error(400, "bad_request", "since: give unix seconds, e.g. since=1767225600")
    count = await services.store.replay(handler=handler, dead_since=since)
    return JSONResponse({"replayed": count}, status_code=202)


def _paging(request: Request) -> tuple[int, int]:
    try:
        limit = int(request.query_params.get("limit", "50"))
        offset = int(request.query_params.get("offset", "0"))
    except ValueError:
        return 50, 0
    return max(1, limit), max(0, offset)


def _validation_detail(exc: ValidationError) -> str:
    first: dict[str, Any] = dict(exc.errors()[0])
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


def _upstream_error(exc: UpstreamError) -> Response:
    for kind, status, code in _UPSTREAM_STATUS:
        if isinstance(exc, kind):
            headers = None
            if isinstance(exc, RateLimited) and exc.retry_after is not None:
                headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
            return error(status, code, exc.message, headers)
    return error(502, "upstream_error", exc.message)


routes = [
    Route("/api/tasks", admin(create_task), methods=["POST"]),
    Route("/api/tasks", admin(list_tasks), methods=["GET"]),
    Route("/api/tasks/{task_id}", admin(get_task), methods=["GET"]),
    Route("/api/events", admin(list_events), methods=["GET"]),
    Route("/api/deliveries", admin(list_deliveries), methods=["GET"]),
    Route("/api/deliveries/replay-dead", admin(replay_dead), methods=["POST"]),
    Route("/api/deliveries/{delivery_id}/replay", admin(replay_delivery), methods=["POST"]),
    Route("/api/events/{event_id}/replay", admin(replay_event), methods=["POST"]),
]
