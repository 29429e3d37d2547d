"""Parse a verified callback body into JSON every store backend can hold, or say why not.

A valid signature proves who sent the bytes, not that they are sane. Python's `json` takes
things our stores cannot keep or our code cannot walk: nesting deep enough to exhaust the
recursion limit, `NaN`/`Infinity` (PostgreSQL's JSON refuses them), lone surrogates (not
UTF-8 at all), NUL characters (PostgreSQL text refuses them), and ids longer than their
columns. Each is refused here as a `ValueError`, which the route answers with 400, instead of
failing later as a 500 (or a 503 that the provider would retry for ever).
"""

from __future__ import annotations

import json
import math
from typing import Any

from receiver.store import EVENT_HEADER_CHARS, ID_LIMITS

__all__ = ["EVENT_HEADER_CHARS", "MAX_DEPTH", "check_lengths", "parse_json"]

MAX_DEPTH = 32
"""Deepest nesting accepted; the provider's callbacks use four levels."""


def parse_json(body: bytes) -> Any:
    """The decoded body; `ValueError` naming the first thing no store could keep."""
    try:
        value = json.loads(body, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    if not _plainly_storable(body):
        check_storable(value)
    return value


def check_storable(value: Any) -> None:
    """Walk a decoded value: `ValueError` for nesting, NUL or a lone surrogate."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                pending.append((child, depth + 1))
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_text(item)


def _plainly_storable(body: bytes) -> bool:
    """The common case, decided without walking the value: it cannot nest deeper than its
    brackets, and in strict UTF-8 (no NUL bytes: not UTF-16 or UTF-32, which json.loads also
    reads) without a `\\u` escape, no string can hold a NUL or a lone surrogate (json.loads
    itself refuses raw control characters in strings)."""
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH or b"\\u" in body or b"\x00" in body:
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def check_lengths(**values: str | None) -> None:
    """Refuse an id longer than the column that stores it."""
    for name, value in values.items():
        limit = ID_LIMITS[name]
        if value is not None and len(value) > limit:
            raise ValueError(f"{name} is longer than {limit} characters")


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise ValueError("a string contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a string contains a lone UTF-16 surrogate") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:20]} is too large for a JSON number")
    return number
