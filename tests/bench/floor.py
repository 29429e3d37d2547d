"""The floor under the relay's ingest: the smallest receiver with the relay's own durable
transaction, to tell what the store costs from what the rest of the app costs.

A bare Starlette route that checks the HMAC signature, decodes the JSON and calls the real
`SqlStore.record_inbound` (inbox row, task, event, one delivery, group commit, 200 after the
commit) — no middleware, no pydantic models, no metrics, no logging, no dispatcher. Run as
`python -m tests.bench.floor --port N` with DATABASE_URL set; measured by `--only floor`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.signing import verify_callback
from receiver.store import Inbound, open_store

STORE = open_store(os.environ.get("DATABASE_URL", "sqlite:///floor.db"))
SECRETS = [os.environ.get("AIMUSIC_WEBHOOK_SECRET", "bench-shared-secret")]


def route(kind: str, platform: str, labels: Any, only: Any) -> list[tuple[str, int]]:
    return [("noop", 0)]


async def receive(request: Request) -> Response:
    body = await request.body()
    verify_callback(SECRETS, request.headers, body, now=time.time())
    parsed = json.loads(body)
    clips = [("song.completed", str(c["clip_id"]), c) for c in parsed["data"]]
    result = await STORE.record_inbound(
        Inbound(
            source="callback",
            body=body,
            platform="producer",
            clips=clips,
            task_id=parsed["task_id"],
            webhook_id=request.headers.get("x-webhook-id"),
        ),
        route,
    )
    return JSONResponse({"status": "duplicate" if result.duplicate else "accepted"})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await STORE.open()
    yield
    await STORE.close()


app = Starlette(
    routes=[Route("/webhooks/aimusic", receive, methods=["POST"]), Route("/healthz", healthz)],
    lifespan=lifespan,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
