"""Handler plugins: where events go once they are stored."""

from __future__ import annotations

from handlers.base import (
    Handler,
    HandlerContext,
    HandlerError,
    HandlerResult,
    SpoolAccess,
    SpooledFile,
)

__all__ = [
    "Handler",
    "HandlerContext",
    "HandlerError",
    "HandlerResult",
    "SpoolAccess",
    "SpooledFile",
]
