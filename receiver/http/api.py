"""`/api/*`: submit and inspect, behind `Authorization: Bearer <RELAY_ADMIN_TOKEN>`."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.errors import RateLimited, StoreUnavailable, UpstreamError
from receiver.http import params as _params
from receiver.http.auth_limit import client_address, limiter_for, retry_after_s
from receiver.http.callback_json import parse_json
from receiver.http.openapi import openapi_document, query_parameters
from receiver.http.responses import (
    BodyTooLarge,
    error,
    first_line,
    present,
    read_body,
    require_admin,
)
from receiver.rows import Row
from receiver.services import Services
from receiver.states import DELIVERY_STATES, EVENT_KINDS, FAMILIES, TASK_STATES
from receiver.submit import SubmitRefused, SubmitRequest, submit
from receiver.upstream.statuses import upstream_status

__all__ = ["routes"]

Endpoint = Callable[[Request, Services], Awaitable[Response]]
Accepted = Mapping[str, frozenset[str]]
"""Method → the query parameters the OpenAPI document gives that route and method."""

_DOCUMENTED_QUERY = query_parameters()


def admin(endpoint: Endpoint, accepted: Accepted) -> Callable[[Request], Awaitable[Response]]:
    """Check the bearer token, then the query parameter names (`accepted`, by method), then
    call `endpoint`; store outages become 503.

    An address with too many failed attempts gets 429 `too_many_attempts` with `Retry-After`
    before its token is looked at (`receiver.http.auth_limit`); a request without an
    `Authorization` header is no attempt and is never counted."""

    async def guarded(request: Request) -> Response:
        services: Services = request.app.state.services
        token = services.settings.relay_admin_token
        expected = token.get_secret_value() if token else None
        limiter = limiter_for(request.app)
        address = client_address(request)
        wait = limiter.blocked_for(address) if expected else None
        if wait is not None:
            seconds = retry_after_s(wait)
            return error(
                429,
                "too_many_attempts",
                f"too many wrong admin tokens from your address; retry in {seconds} s",
                {"Retry-After": str(seconds)},
            )
        refused = require_admin(request, expected)
        if refused is not None:
            if expected and "authorization" in request.headers:
                limiter.failed(address)
            return refused
        limiter.succeeded(address)
        try:
            _params.check_path(request.path_params)
            method = "GET" if request.method == "HEAD" else request.method
            _params.only(request.query_params, accepted.get(method, frozenset()))
            return await endpoint(request, services)
        except _params.BadParam as exc:
            return error(400, "bad_request", exc.detail)
        except StoreUnavailable:
            return error(503, "store_unavailable", "storage is unavailable; retry later")

    return guarded


async def create_task(request: Request, services: Services) -> Response:
    try:
        raw = await read_body(
            request,
            services.settings.relay_max_body_bytes,
            services.settings.relay_body_timeout_s,
        )
        # parse_json refuses what no store can keep (NUL, lone surrogates, NaN, deep nesting):
        # without it, PostgreSQL answered such a prompt with a 500.
        body = SubmitRequest.model_validate(parse_json(raw))
    except BodyTooLarge:
        return error(413, "too_large", "request body too large")
    except ValidationError as exc:
        return error(400, "bad_request", _validation_detail(exc))
    except ValueError as exc:
        return error(400, "bad_request", f"body is not usable JSON: {first_line(exc)}")
    try:
        task = await submit(services, body)
    except SubmitRefused as exc:
        return error(400, "bad_request", str(exc))
    except UpstreamError as exc:
        return _upstream_error(exc)
    return JSONResponse(present(task), status_code=202)


async def tasks(request: Request, services: Services) -> Response:
    """One route for both methods, so a 405 on `/api/tasks` lists `Allow: GET, POST`."""
    if request.method == "POST":
        return await create_task(request, services)
    return await list_tasks(request, services)


async def list_tasks(request: Request, services: Services) -> Response:
    """Newest first; filters `state`, `family`, `label=key:value` (repeatable)."""
    query = request.query_params
    limit, offset = _params.paging(query)
    found = await services.store.reads.list_tasks(
        limit + 1,
        offset,
        state=_params.choice(query, "state", TASK_STATES),
        family=_params.choice(query, "family", FAMILIES),
        labels=_params.labels(query),
    )
    return _page(request, found, limit, offset)


async def get_task(request: Request, services: Services) -> Response:
    task = await services.store.reads.task_detail(request.path_params["task_id"])
    if task is None:
        return error(404, "not_found", "no task with that id")
    return JSONResponse(present(task))


async def list_events(request: Request, services: Services) -> Response:
    """Newest first; filters `kind`, `task` (the provider's task id or the relay's)."""
    query = request.query_params
    limit, offset = _params.paging(query)
    found = await services.store.reads.list_events(
        limit + 1,
        offset,
        kind=_params.choice(query, "kind", EVENT_KINDS),
        task=_params.text(query, "task"),
    )
    return _page(request, found, limit, offset)


async def list_deliveries(request: Request, services: Services) -> Response:
    """Most recently updated first; filters `state`, `handler`."""
    query = request.query_params
    limit, offset = _params.paging(query)
    state = _params.choice(query, "state", DELIVERY_STATES)
    handler = _params.handler(query, _handler_names(services))
    found = await services.store.reads.list_deliveries(state, limit + 1, offset, handler=handler)
    return _page(request, found, limit, offset)


async def get_credits(_request: Request, services: Services) -> Response:
    """The AI Music API account's balance (extra credits are spent first)."""
    try:
        answer = await services.upstream.credits()
    except UpstreamError as exc:
        return _upstream_error(exc)
    return JSONResponse({"credits": answer.credits, "extra_credits": answer.extra_credits})


async def openapi(request: Request) -> Response:
    """The OpenAPI 3.1 document; public, so tools can read it before they hold a token."""
    try:
        _params.only(request.query_params, _DOCUMENTED_QUERY[("/api/openapi.json", "get")])
    except _params.BadParam as exc:
        return error(400, "bad_request", exc.detail)
    return JSONResponse(openapi_document())


async def replay_delivery(request: Request, services: Services) -> Response:
    delivery_id = request.path_params["delivery_id"]
    if await services.store.replay(delivery_id=delivery_id):
        return JSONResponse({"replayed": 1}, status_code=202)
    if await services.store.reads.get_delivery(delivery_id) is None:
        return error(404, "not_found", "no delivery with that id")
    return error(409, "in_progress", "the delivery is pending or running; nothing to replay")


async def replay_event(request: Request, services: Services) -> Response:
    count = await services.store.replay(event_id=request.path_params["event_id"])
    if not count:
        return error(404, "not_found", "no finished delivery for that event id")
    return JSONResponse({"replayed": count}, status_code=202)


async def replay_dead(request: Request, services: Services) -> Response:
    """Bulk: every dead letter, optionally of one (configured) handler and/or since a unix
    time."""
    handler = _params.handler(request.query_params, _handler_names(services))
    try:
        since = float(request.query_params.get("since", "0"))
    except ValueError:
        since = math.nan
    if not math.isfinite(since):
        return error(400, "bad_request", "since: give unix seconds, e.g. since=1767225600")
    count = await services.store.replay(handler=handler, dead_since=since)
    return JSONResponse({"replayed": count}, status_code=202)


def _page(request: Request, rows: Sequence[Row], limit: int, offset: int) -> Response:
    """One page as the JSON array callers already read; `X-Next-Offset` and a `Link: rel=next`
    header say where the next page starts (absent on the last page). The store was asked for
    one row more than `limit`, which is how we know there is a next page."""
    headers: dict[str, str] = {}
    if len(rows) > limit:
        next_offset = offset + limit
        headers["X-Next-Offset"] = str(next_offset)
        next_url = request.url.include_query_params(offset=next_offset, limit=limit)
        headers["Link"] = f'<{next_url}>; rel="next"'
    return JSONResponse(present(rows[:limit]), headers=headers)


def _handler_names(services: Services) -> list[str]:
    return [h.name for h in services.handlers]


def _validation_detail(exc: ValidationError) -> str:
    first: dict[str, Any] = dict(exc.errors()[0])
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


def _upstream_error(exc: UpstreamError) -> Response:
    answer = upstream_status(exc)
    headers = None
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
    return error(answer.status, answer.code, exc.message, headers)


def _admin_route(path: str, endpoint: Endpoint, methods: list[str]) -> Route:
    """A token-guarded route that takes exactly the query parameters its document lists."""
    accepted = {m: _DOCUMENTED_QUERY.get((path, m.lower()), frozenset()) for m in methods}
    return Route(path, admin(endpoint, accepted), methods=methods)


routes = [
    _admin_route("/api/tasks", tasks, ["GET", "POST"]),
    _admin_route("/api/tasks/{task_id}", get_task, ["GET"]),
    _admin_route("/api/events", list_events, ["GET"]),
    _admin_route("/api/deliveries", list_deliveries, ["GET"]),
    _admin_route("/api/deliveries/replay-dead", replay_dead, ["POST"]),
    _admin_route("/api/deliveries/{delivery_id}/replay", replay_delivery, ["POST"]),
    _admin_route("/api/events/{event_id}/replay", replay_event, ["POST"]),
    _admin_route("/api/credits", get_credits, ["GET"]),
    Route("/api/openapi.json", openapi, methods=["GET"]),
]
