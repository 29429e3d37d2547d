"""`/healthz` (the process answers) and `/readyz` (the store answers, schema at head)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.errors import StoreUnavailable
from receiver.services import Services
from receiver.store.migrate import head_revision

__all__ = ["routes"]


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        revision = await services.store.ping()
    except StoreUnavailable as exc:
        return JSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
    head = head_revision()
    if revision != head:
        return JSONResponse(
            {
                "status": "migrations_pending",
                "detail": f"schema {revision}, code expects {head}: run `aimusic-relay db upgrade`",
            },
            status_code=503,
        )
    return JSONResponse({"status": "ready", "schema": revision})


routes = [Route("/healthz", healthz), Route("/readyz", readyz)]
