"""A media server on loopback for the spool and download-guard tests: files, redirects,
oversize, endless, slow and failing answers, each request counted (and its `Host` kept).

Tests keep apart on one module-wide server by a unique query string (`tag`), so counts and
spool names never collide.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import threading
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.servers import run_asgi


def make_wav(frames: bytes = b"\x00\x01" * 4000) -> bytes:
    """A short, valid mono 16-bit 8 kHz WAV file holding `frames`."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(frames)
    return buffer.getvalue()


WAV = make_wav()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
CHUNK = b"x" * 65536


@dataclass
class Media:
    """The running media server: its URL, each request it saw and the `Host` that request named."""

    url: str = ""
    hits: collections.Counter[str] = field(default_factory=collections.Counter)
    hosts: dict[str, str] = field(default_factory=dict)
    endless_sent: list[int] = field(default_factory=lambda: [0])
    endless_closed: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def seen(self, tag: str) -> list[str]:
        """Requests carrying `tag`, also inside a URL-encoded redirect target."""
        token = tag.partition("=")[2]
        return [key for key in self.hits if token in key]


def media_app(media: Media) -> Starlette:
    """Serves files, redirects, oversize and endless bodies, slow and failing answers."""

    def seen(request: Request) -> str:
        key = f"{request.url.path}?{request.url.query}"
        media.hits[key] += 1
        media.hosts[key] = request.headers.get("host", "")
        return key

    async def song(request: Request) -> Response:
        seen(request)
        return Response(WAV, media_type="audio/wav")

    async def cover(request: Request) -> Response:
        seen(request)
        return Response(PNG, media_type="image/png")

    async def untyped(request: Request) -> Response:
        seen(request)
        return Response(WAV)

    async def page(request: Request) -> Response:
        seen(request)
        return Response("<html></html>", media_type="text/html")

    async def redirect(request: Request) -> Response:
        seen(request)
        left = int(request.path_params["n"])
        where = f"/redirect/{left - 1}" if left else "/song.wav"
        return RedirectResponse(f"{where}?{request.url.query}", status_code=302)

    async def go(request: Request) -> Response:
        seen(request)
        return RedirectResponse(request.query_params["to"], status_code=302)

    async def big(request: Request) -> Response:
        seen(request)

        async def body() -> AsyncIterator[bytes]:
            await asyncio.sleep(1.0)  # only the declared length can refuse this in time
            yield b"x"

        headers = {"Content-Length": str(1 << 30)}
        return StreamingResponse(body(), media_type="audio/wav", headers=headers)

    async def endless(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            try:
                while True:
                    media.endless_sent[0] += len(CHUNK)
                    yield CHUNK
                    await asyncio.sleep(0)
            finally:
                media.endless_closed.set()

        return StreamingResponse(body(), media_type="audio/mpeg")

    async def slow(request: Request) -> Response:
        await asyncio.sleep(1.0)
        return Response(WAV, media_type="audio/wav")

    async def stall(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield CHUNK
            await asyncio.sleep(1.0)
            yield CHUNK

        return StreamingResponse(body(), media_type="audio/wav")

    async def flaky(request: Request) -> Response:
        if media.hits[seen(request)] == 1:
            return Response("down", status_code=500)
        return Response(WAV, media_type="audio/wav")

    async def limited(request: Request) -> Response:
        seen(request)
        return Response("slow down", status_code=429, headers={"Retry-After": "7"})

    async def missing(request: Request) -> Response:
        seen(request)
        return Response("no", status_code=404)

    async def anything(request: Request) -> Response:
        seen(request)
        return Response("metadata", media_type="application/octet-stream")

    return Starlette(
        routes=[
            Route("/song.wav", song),
            Route("/cover.png", cover),
            Route("/untyped", untyped),
            Route("/page.html", page),
            Route("/redirect/{n:int}", redirect),
            Route("/go", go),
            Route("/big.wav", big),
            Route("/endless.mp3", endless),
            Route("/slow.wav", slow),
            Route("/stall.wav", stall),
            Route("/flaky.wav", flaky),
            Route("/limited.wav", limited),
            Route("/missing.wav", missing),
            Route("/{rest:path}", anything),
        ]
    )


@contextlib.contextmanager
def serve_media() -> Iterator[Media]:
    """Run a media server for the `with` block; yields its state, URL filled in."""
    state = Media()
    with run_asgi(media_app(state)) as url:
        state.url = url
        yield state
