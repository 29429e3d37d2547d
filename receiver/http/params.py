"""Query parameters of the admin API, checked strictly: a wrong value is a 400 naming it.

Silently falling back to a default (`limit=abc` → 50) hides a caller's bug and pages through
the wrong rows; we refuse instead. The same goes for a parameter the route does not take
(`?hanlder=disk` would otherwise list every delivery) and a handler name nobody configured
(`handler=nope` answered an empty list, and a bulk replay of nothing, as if all were well).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from starlette.datastructures import QueryParams

__all__ = [
    "MAX_LIMIT",
    "MAX_OFFSET",
    "BadParam",
    "check_path",
    "choice",
    "handler",
    "labels",
    "only",
    "paging",
    "text",
    "unsafe_text",
]

MAX_LIMIT = 500
MAX_OFFSET = 1_000_000_000
"""Far beyond any real table; keeps the value inside every database's integer range."""

_DIGITS = re.compile(r"[0-9]{1,10}")
_LABEL_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_TEXT = 256


class BadParam(Exception):
    """A query or path parameter the API cannot use; `detail` names it and says what fits."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"{name}: {detail}")
        self.name = name
        self.detail = f"{name}: {detail}"


def paging(query: QueryParams) -> tuple[int, int]:
    """(limit, offset): limit 1-500 (default 50), offset ≥ 0 (default 0)."""
    limit = _whole(query, "limit", 50, 1, MAX_LIMIT)
    offset = _whole(query, "offset", 0, 0, MAX_OFFSET)
    return limit, offset


def choice(query: QueryParams, name: str, allowed: Collection[str]) -> str | None:
    """The parameter, if given, when it is one of `allowed`."""
    value = query.get(name)
    if value is None:
        return None
    if value not in allowed:
        raise BadParam(name, f"{value[:40]!r} is not one of {', '.join(allowed)}")
    return value


def text(query: QueryParams, name: str) -> str | None:
    """A free-text filter (an id, a handler name), if given."""
    value = query.get(name)
    if value is None:
        return None
    problem = unsafe_text(value)
    if problem:
        raise BadParam(name, problem)
    return value


def only(query: QueryParams, accepted: Collection[str]) -> None:
    """Refuse the first parameter that is not one of `accepted` (those the route documents)."""
    for name in query:
        if name not in accepted:
            takes = ", ".join(sorted(accepted)) if accepted else "no query parameters"
            raise BadParam(name[:64], f"not a parameter of this route; it takes {takes}")


def handler(query: QueryParams, configured: Collection[str]) -> str | None:
    """The `handler` filter, if given, when it names a configured handler."""
    value = text(query, "handler")
    if value is not None and value not in configured:
        names = ", ".join(configured) or "none"
        raise BadParam(
            "handler", f"{value[:40]!r} is not a configured handler; configured: {names}"
        )
    return value


def labels(query: QueryParams) -> dict[str, str]:
    """Every `label=key:value` (repeatable; all must match)."""
    found: dict[str, str] = {}
    for raw in query.getlist("label"):
        key, sep, value = raw.partition(":")
        if not sep or not _LABEL_KEY.fullmatch(key):
            raise BadParam(
                "label",
                "give key:value, e.g. label=team:ads; the key is 1-64 letters, digits, _ . -",
            )
        problem = unsafe_text(value)
        if problem:
            raise BadParam("label", problem)
        if key in found:
            raise BadParam("label", f"{key} given twice; a task's label has one value")
        found[key] = value
    return found


def unsafe_text(value: str) -> str | None:
    """Why `value` cannot be a filter or id (too long, control characters), or None."""
    if len(value) > _MAX_TEXT:
        return f"at most {_MAX_TEXT} characters"
    if _CONTROL.search(value):
        return "control characters are not allowed"
    return None


def check_path(params: Mapping[str, str]) -> None:
    """Path parameters (ids) obey the same rules as free-text filters."""
    for name, value in params.items():
        problem = unsafe_text(value)
        if problem:
            raise BadParam(name, problem)


def _whole(query: QueryParams, name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise BadParam(name, f"give a whole number from {low} to {high}")
    return int(raw)
