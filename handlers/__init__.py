"""Handler plugins: where events go once they are stored."""

from __future__ import annotations

from handlers.base import (
    Checkable,
    Handler,
    HandlerCheck,
    HandlerContext,
    HandlerError,
    HandlerResult,
    HoldsSecrets,
    SpoolAccess,
    SpooledFile,
    config_secrets,
)

__all__ = [
    "Checkable",
    "Handler",
    "HandlerCheck",
    "HandlerContext",
    "HandlerError",
    "HandlerResult",
    "HoldsSecrets",
    "SpoolAccess",
    "SpooledFile",
    "config_secrets",
]
