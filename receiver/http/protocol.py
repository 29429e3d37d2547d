"""uvicorn's HTTP protocol with a deadline and a size cap for request headers (slowloris).

uvicorn (0.54, both its httptools and h11 protocols) times out nothing before a request's
headers are complete: its keep-alive timer starts only after a response, so a client that
opens a connection and trickles header bytes holds it, and a file descriptor, for ever; a few
hundred such clients reach a container's `ulimit -n` and nobody else is served. Its httptools
protocol also keeps headers of any size (200 MiB sent in 0.3 s grew the process by as much).

This subclass gives every request `HEADER_TIMEOUT_S` to get its line and headers in, counted
from the connection's opening or the request's first byte, and `MAX_HEADER_BYTES` of them,
then answers 408 or 431 and closes (as nginx's `client_header_timeout` and header buffers
do). Bodies have their own limits in the app (`RELAY_BODY_TIMEOUT_S`, `RELAY_MAX_BODY_BYTES`).
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HEADER_TIMEOUT_S", "MAX_HEADER_BYTES", "HeaderLimitsProtocol"]

HEADER_TIMEOUT_S = 10.0
"""Time a client has to send a request's line and headers (nginx allows 60 s; our clients are
a provider and an operator's tools, which send them at once)."""

MAX_HEADER_BYTES = 64 * 1024
"""Request line and headers, at most (h11 allows 16 KiB, nginx about 32 KiB)."""


def _answer(status: str, error: str, detail: str) -> bytes:
    body = json.dumps({"error": error, "detail": detail})
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return (head + body).encode()


class HeaderLimitsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` (what uvicorn's `http="auto"` picks) with the header limits; give
    uvicorn the class as `http=`. A subclass may change `header_timeout_s`, `max_header_bytes`."""

    header_timeout_s: float = HEADER_TIMEOUT_S
    max_header_bytes: int = MAX_HEADER_BYTES
    _header_timer: asyncio.TimerHandle | None = None
    _header_bytes = 0
    _boundary = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_clock()

    def data_received(self, data: bytes) -> None:
        # Counted after parsing, and only reads that fall wholly inside one request's headers:
        # a read where a request begins or its headers end may also hold another request's
        # body, which is not ours to count. So the cap may be passed by one read (uvloop
        # reads at most 250 KB at a time).
        waiting, self._boundary = self._header_timer is not None, False
        super().data_received(data)
        if not waiting or self._boundary or self._header_timer is None:
            return
        self._header_bytes += len(data)
        if self._header_bytes > self.max_header_bytes and not self.transport.is_closing():
            self._give_up(
                "431 Request Header Fields Too Large",
                "headers_too_large",
                f"the request headers are larger than {self.max_header_bytes} bytes",
            )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._boundary, self._header_bytes = True, 0
        self._start_header_clock()  # a keep-alive connection's next request

    def on_headers_complete(self) -> None:
        self._boundary = True
        self._stop_header_clock()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_clock()
        super().connection_lost(exc)

    def _start_header_clock(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _stop_header_clock(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self._give_up(
                "408 Request Timeout",
                "timeout",
                f"the request headers did not arrive within {self.header_timeout_s:g} s",
            )

    def _give_up(self, status: str, error: str, detail: str) -> None:
        """Answer `status` and close; if a pipelined request is still being answered, finish
        that answer first and read nothing more."""
        self._stop_header_clock()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
            self.flow.pause_reading()
            return
        self.transport.write(_answer(status, error, detail))
        self.transport.close()
