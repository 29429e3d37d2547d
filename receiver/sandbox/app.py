"""The sandbox's HTTP surface: the provider's routes, the media it links to, and a peek hatch.

One factory builds an app around one `SandboxOptions`; all state lives in the app it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.sandbox.callbacks import CallbackSender
from receiver.sandbox.guard import Guard
from receiver.sandbox.media import png_cover, wav_song
from receiver.sandbox.options import PRODUCER_CREATE_COST, SandboxOptions
from receiver.sandbox.tasks import MARKERS, SandboxTask, TaskRegistry, derive_title, generate_lyrics
from receiver.sandbox.validation import Rejected, validate_create

__all__ = ["create_sandbox_app", "serve"]

Endpoint = Callable[[Request], Awaitable[Response]]

OUT_OF_CREDITS = "The remaining credits are not enough to complete this request."
NURO_RETIRED = (
    "The nuro API has been retired: create vocal songs with sonic (POST /api/v1/sonic/create) "
    "and background music with producer (POST /api/v1/producer/create)."
)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status, headers=headers)


class _Sandbox:
    """The state of one sandbox app and its endpoints, bound to it (no module globals)."""

    def __init__(self, options: SandboxOptions) -> None:
        self.options = options
        self.registry = TaskRegistry(options.credits)
        self.sender = CallbackSender(options, self.registry)
        self.guard = Guard(options)

    def api(self, endpoint: Endpoint) -> Endpoint:
        """Wrap an `/api` endpoint: the guard runs first, `Rejected` becomes an error body."""

        async def guarded(request: Request) -> Response:
            try:
                self.guard.check(request.headers.get("authorization"))
                return await endpoint(request)
            except Rejected as exc:
                headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
                return _error(exc.status, exc.message, headers)

        return guarded

    async def create(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            raise Rejected(400, "the request body is not valid JSON") from None
        params = await validate_create(body)
        if not self.registry.charge(PRODUCER_CREATE_COST):
            raise Rejected(self.options.out_of_credits_status, OUT_OF_CREDITS)
        prompt = f"{params.sound}\n{params.lyrics}"
        lyrics = params.lyrics or generate_lyrics(params.sound, params.make_instrumental)
        task = SandboxTask(
            task_id=str(uuid.uuid4()),
            clip_id=str(uuid.uuid4()),
            sound=params.sound,
            lyrics=lyrics,
            title=params.title or derive_title(params.sound, lyrics),
            mv=params.mv,
            seed=params.seed,
            make_instrumental=params.make_instrumental,
            webhook_url=params.webhook_url,
            webhook_secret=params.webhook_secret,
            markers=frozenset(m for m in MARKERS if m in prompt),
            base_url=(self.options.public_url or str(request.base_url)).rstrip("/"),
            delay_s=self.options.delay_s,
            created_at=datetime.now(UTC),
        )
        self.registry.add(task)
        self.sender.start(task)
        return JSONResponse({"message": "success", "task_id": task.task_id})

    async def task(self, request: Request) -> Response:
        task = self.registry.get(request.path_params["task_id"])
        if task is None:
            raise Rejected(400, "task not found.")
        return JSONResponse(task.answer(time.monotonic(), self.options.audio_seconds))

    async def credits(self, request: Request) -> Response:
        balance = self.registry.credits
        shown: float = int(balance) if balance.is_integer() else balance
        return JSONResponse({"credits": shown, "extra_credits": 0})

    async def nuro(self, request: Request) -> Response:
        raise Rejected(410, NURO_RETIRED)

    async def wav(self, request: Request) -> Response:
        task = self.registry.by_clip(request.path_params["clip_id"])
        if task is None:
            return _error(404, "clip not found.")
        if not task.has_audio(time.monotonic()):
            return _error(404, "the clip has no audio (yet).")
        # Synthesis takes a few tens of ms: keep it off the event loop.
        data = await asyncio.to_thread(wav_song, task.prompt, self.options.audio_seconds)
        return Response(data, media_type="audio/wav")

    async def png(self, request: Request) -> Response:
        task = self.registry.by_clip(request.path_params["clip_id"])
        if task is None:
            return _error(404, "clip not found.")
        return Response(await asyncio.to_thread(png_cover, task.prompt), media_type="image/png")

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def tasks(self, request: Request) -> Response:
        now = time.monotonic()
        return JSONResponse([task.describe(now) for task in self.registry.all()])


async def _http_error(request: Request, exc: Exception) -> Response:
    # Unknown paths and wrong methods answer in the provider's error shape too.
    if not isinstance(exc, HTTPException):  # pragma: no cover - registered for HTTPException
        raise exc
    return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))


def create_sandbox_app(options: SandboxOptions) -> Starlette:
    """An emulated AI Music API; its lifespan cancels callback jobs and closes their client."""
    sandbox = _Sandbox(options)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await sandbox.sender.aclose()

    api = sandbox.api
    routes = [
        Route("/api/v1/producer/create", api(sandbox.create), methods=["POST"]),
        Route("/api/v1/producer/task/{task_id}", api(sandbox.task), methods=["GET"]),
        Route("/api/v1/get-credits", api(sandbox.credits), methods=["GET"]),
        Route("/api/v1/nuro/create", api(sandbox.nuro), methods=["POST"]),
        Route("/api/v1/nuro/task/{task_id}", api(sandbox.nuro), methods=["GET"]),
        Route("/media/{clip_id}.wav", sandbox.wav, methods=["GET"]),  # GET routes answer HEAD
        Route("/media/{clip_id}.png", sandbox.png, methods=["GET"]),
        Route("/healthz", sandbox.healthz, methods=["GET"]),
        Route("/sandbox/tasks", sandbox.tasks, methods=["GET"]),
    ]
    return Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error}
    )


async def serve(host: str, port: int, options: SandboxOptions) -> None:
    """Run the sandbox under uvicorn until cancelled (or until uvicorn sees a signal).

    On cancellation uvicorn is asked to exit and awaited, so the lifespan shutdown (which
    cancels pending callbacks) runs before the cancellation propagates.
    """
    config = uvicorn.Config(
        create_sandbox_app(options), host=host, port=port, lifespan="on", log_level="info"
    )
    server = uvicorn.Server(config)
    running = asyncio.ensure_future(server.serve())
    try:
        await asyncio.shield(running)
    except asyncio.CancelledError:
        server.should_exit = True
        await running
        raise
