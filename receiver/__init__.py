"""aimusic-relay: submit AI Music API tasks and route their signed callbacks to handlers."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
