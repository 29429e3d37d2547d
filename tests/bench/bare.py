"""The baseline for the ingest ratio: a bare Starlette app that reads the body and answers
200 JSON, served by uvicorn with exactly the arguments `aimusic-relay serve` passes.

Run as `python -m tests.bench.bare --port N`. Whatever the relay does beyond this (verify,
parse, commit, log) is what the ratio measures.
"""

from __future__ import annotations

import argparse
import os

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def receive(request: Request) -> Response:
    await request.body()
    return JSONResponse({"status": "accepted", "events": []})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/webhooks/aimusic", receive, methods=["POST"]),
        Route("/healthz", healthz),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The same call as receiver/cli.py `serve` (workers=1, loop and http "auto": uvloop and
    # httptools when installed), with uvicorn's own logging at the relay's level.
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level=os.environ.get("RELAY_LOG_LEVEL", "info").lower(),
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips="*",
        timeout_graceful_shutdown=25,
    )


if __name__ == "__main__":
    main()
