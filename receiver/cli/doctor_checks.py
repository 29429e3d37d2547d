"""Each configured handler's line in `aimusic-relay doctor`: its own dry run, if it has one.

The dry runs live with their handlers (`Checkable.check()`); this module only turns one into a
report line, and collects the secrets each handler holds so that no line can show them.
"""

from __future__ import annotations

import dataclasses

from handlers.base import Checkable, CheckStatus, secrets_of
from receiver.delivery.handler_set import ConfiguredHandler

__all__ = ["Check", "Status", "check_handler", "handler_secrets"]

Status = CheckStatus


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's report: what was checked, how it went, what to do about it."""

    name: str
    status: Status
    detail: str
    advice: str = ""


async def check_handler(configured: ConfiguredHandler) -> Check:
    """The handler's own dry run as a report line; a type without one only reports that it
    loaded, and a dry run that raises is a failed line, never a traceback."""
    name = f"handler {configured.name}"
    handler = configured.handler
    if not isinstance(handler, Checkable):
        return Check(
            name, "ok", f"type {configured.spec.type} loaded; doctor has no dry run for it"
        )
    try:
        found = await handler.check()
    except Exception as exc:  # a plugin's bug is a finding, like any other
        return Check(name, "fail", f"check crashed: {type(exc).__name__}: {exc}")
    return Check(name, found.status, found.detail, found.advice)


def handler_secrets(configured: ConfiguredHandler) -> list[str]:
    """Every secret value the handler holds (see `handlers.base.secrets_of`)."""
    return secrets_of(configured.handler)
