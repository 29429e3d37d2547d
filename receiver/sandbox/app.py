"""The sandbox's HTTP surface: the provider's routes, the media it links to, and a peek hatch.

One factory builds an app around one `SandboxOptions`; all state lives in the app it returns.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.sandbox.callbacks import CallbackSender
from receiver.sandbox.guard import Guard
from receiver.sandbox.lyrics import new_lyrics_task, sonic_lyrics_answer, validate_text
from receiver.sandbox.media import png_cover, wav_song
from receiver.sandbox.options import LYRICS_COST, PRODUCER_CREATE_COST, SandboxOptions
from receiver.sandbox.producer import ProducerTask
from receiver.sandbox.sonic import new_sonic_task, sonic_cost
from receiver.sandbox.sonic_rules import validate_sonic
from receiver.sandbox.tasks import TaskRegistry, find_markers
from receiver.sandbox.validation import Rejected, validate_create
from receiver.sandbox.words import derive_title, generate_lyrics

__all__ = ["create_sandbox_app", "serve"]

Endpoint = Callable[[Request], Awaitable[Response]]

OUT_OF_CREDITS = "The remaining credits are not enough to complete this request."
NO_SUBSCRIPTION = "no active subscription: subscribe to a plan to use the API."
LYRICS_REJECTED = "lyrics rejected: copyright"
COPYRIGHT_MARKER = "#copyright"
"""In the lyrics of a create (producer `lyrics`, sonic `prompt`): 403 `lyrics rejected`."""
NURO_RETIRED = (
    "The nuro API has been retired: create vocal songs with sonic (POST /api/v1/sonic/create) "
    "and background music with producer (POST /api/v1/producer/create)."
)
_REQUEST_LOG = 1000


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status, headers=headers)


class _Sandbox:
    """The state of one sandbox app and its endpoints, bound to it (no module globals)."""

    def __init__(self, options: SandboxOptions) -> None:
        self.options = options
        self.registry = TaskRegistry(options.credits)
        self.sender = CallbackSender(options, self.registry)
        self.guard = Guard(options)
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=_REQUEST_LOG)

    def api(self, endpoint: Endpoint) -> Endpoint:
        """Wrap an `/api` endpoint: the guard runs first, `Rejected` becomes an error body.

        Every request is logged (method, path, status; never a header) for `/sandbox/requests`.
        """

        async def guarded(request: Request) -> Response:
            try:
                self.guard.check(request.headers.get("authorization"))
                response = await endpoint(request)
            except Rejected as exc:
                headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
                response = _error(exc.status, exc.message, headers)
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.url.path,
                    "status": response.status_code,
                    "at": datetime.now(UTC).isoformat(),
                }
            )
            return response

        return guarded

    async def _paid_body(self, request: Request) -> Any:
        """The JSON body of a call that costs credits; refused first without a subscription."""
        if not self.options.subscription_active:
            raise Rejected(403, NO_SUBSCRIPTION)
        try:
            return json.loads(await request.body())
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            raise Rejected(400, "the request body is not valid JSON") from None

    def _charge(self, cost: float, lyrics: str | None = None) -> None:
        """Moderate the lyrics, then take the credits; either may refuse (nothing charged)."""
        if lyrics and COPYRIGHT_MARKER in lyrics:
            raise Rejected(403, LYRICS_REJECTED)
        if not self.registry.charge(cost):
            raise Rejected(self.options.out_of_credits_status, OUT_OF_CREDITS)

    def _base_url(self, request: Request) -> str:
        return (self.options.public_url or str(request.base_url)).rstrip("/")

    def _markers(self, *texts: str | None) -> frozenset[str]:
        return find_markers(texts, self.options.never_finish_marker)

    async def create(self, request: Request) -> Response:
        params = await validate_create(await self._paid_body(request))
        self._charge(PRODUCER_CREATE_COST, params.lyrics)
        lyrics = params.lyrics or generate_lyrics(params.sound, params.make_instrumental)
        task = ProducerTask(
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
            markers=self._markers(params.sound, params.lyrics),
            cost=PRODUCER_CREATE_COST,
            base_url=self._base_url(request),
            delay_s=self.options.delay_s,
            created_at=datetime.now(UTC),
        )
        self.registry.add(task)
        self.sender.start(task)
        return JSONResponse({"message": "success", "task_id": task.task_id})

    async def sonic_create(self, request: Request) -> Response:
        params = await validate_sonic(await self._paid_body(request))
        self._charge(sonic_cost(params.task_type), params.prompt)
        task = new_sonic_task(
            params,
            markers=self._markers(
                params.prompt, params.gpt_description_prompt, params.tags, params.title
            ),
            base_url=self._base_url(request),
            delay_s=self.options.delay_s,
            created_at=datetime.now(UTC),
        )
        self.registry.add(task)
        self.sender.start(task)
        return JSONResponse({"code": 200, "message": "success", "task_id": task.task_id})

    async def lyrics_create(self, request: Request) -> Response:
        prompt = validate_text(await self._paid_body(request), "prompt")
        self._charge(LYRICS_COST)
        task = new_lyrics_task(
            prompt,
            markers=self._markers(prompt),
            base_url=self._base_url(request),
            delay_s=self.options.delay_s,
            created_at=datetime.now(UTC),
        )
        self.registry.add(task)
        return JSONResponse({"message": "success", "task_id": task.task_id})

    async def sonic_lyrics(self, request: Request) -> Response:
        description = validate_text(await self._paid_body(request), "description")
        self._charge(LYRICS_COST)
        return JSONResponse(sonic_lyrics_answer(description))

    def _poll(self, request: Request, family: str) -> Response:
        task = self.registry.get(request.path_params["task_id"], family)
        if task is None:
            raise Rejected(400, "task not found.")
        return JSONResponse(task.answer(time.monotonic(), self.options.audio_seconds))

    async def task(self, request: Request) -> Response:
        return self._poll(request, "producer")

    async def sonic_task(self, request: Request) -> Response:
        return self._poll(request, "sonic")

    async def credits(self, request: Request) -> Response:
        balance = self.registry.credits
        shown: float = int(balance) if balance.is_integer() else balance
        return JSONResponse({"credits": shown, "extra_credits": 0})

    async def nuro(self, request: Request) -> Response:
        raise Rejected(410, NURO_RETIRED)

    async def wav(self, request: Request) -> Response:
        clip_id = request.path_params["clip_id"]
        task = self.registry.by_clip(clip_id)
        if task is None:
            return _error(404, "clip not found.")
        if not task.has_audio(time.monotonic()):
            return _error(404, "the clip has no audio (yet).")
        # Synthesis takes a few tens of ms: keep it off the event loop.
        data = await asyncio.to_thread(
            wav_song, task.media_prompt(clip_id), self.options.audio_seconds
        )
        return Response(data, media_type="audio/wav")

    async def png(self, request: Request) -> Response:
        clip_id = request.path_params["clip_id"]
        task = self.registry.by_clip(clip_id)
        if task is None:
            return _error(404, "clip not found.")
        cover = await asyncio.to_thread(png_cover, task.media_prompt(clip_id))
        return Response(cover, media_type="image/png")

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def tasks(self, request: Request) -> Response:
        now = time.monotonic()
        return JSONResponse([task.describe(now) for task in self.registry.all()])

    async def request_log(self, request: Request) -> Response:
        return JSONResponse(list(self.requests))


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
        Route("/api/v1/producer/lyrics-create", api(sandbox.lyrics_create), methods=["POST"]),
        Route("/api/v1/sonic/create", api(sandbox.sonic_create), methods=["POST"]),
        Route("/api/v1/sonic/task/{task_id}", api(sandbox.sonic_task), methods=["GET"]),
        Route("/api/v1/sonic/lyrics", api(sandbox.sonic_lyrics), methods=["POST"]),
        Route("/api/v1/get-credits", api(sandbox.credits), methods=["GET"]),
        Route("/api/v1/nuro/create", api(sandbox.nuro), methods=["POST"]),
        Route("/api/v1/nuro/task/{task_id}", api(sandbox.nuro), methods=["GET"]),
        Route("/media/{clip_id}.wav", sandbox.wav, methods=["GET"]),  # GET routes answer HEAD
        Route("/media/{clip_id}.png", sandbox.png, methods=["GET"]),
        Route("/healthz", sandbox.healthz, methods=["GET"]),
        Route("/sandbox/tasks", sandbox.tasks, methods=["GET"]),
        Route("/sandbox/requests", sandbox.request_log, methods=["GET"]),
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
