"""`GET /metrics`: Prometheus text exposition of this process's registry.

Unauthenticated by convention (scrapers rarely carry tokens); `receiver.metrics` keeps
secrets, handler options and URLs out of it. Put it behind your network's rules if the
counts themselves are sensitive.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.services import Services

__all__ = ["routes"]


async def metrics(request: Request) -> Response:
    services: Services = request.app.state.services
    body = await services.metrics.render(services.store)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics, methods=["GET"])]
