"""Hide secrets before anything reaches a dashboard page.

Two nets, because either alone leaks: by *key name* (a payload's `webhook_secret`, an
`Authorization` header, an `api_key` we have never seen the value of) and by *value* (our own
secrets wherever they turn up, e.g. inside an error message). Callback URLs carry a signed token
in their path; `hide_callback_token` replaces it by `(hidden)` so the URL stays readable but
cannot be replayed. The API's rows, the CLI and these pages all use that one function, so a
task's callback URL reads the same wherever it is shown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

__all__ = ["HIDDEN", "HIDDEN_TOKEN", "Redactor", "hide_callback_token"]

HIDDEN = "…"
"""What a hidden value is shown as."""
HIDDEN_TOKEN = "(hidden)"  # noqa: S105 - the placeholder shown instead of a token, not one
"""What a callback URL's signed token is shown as, on every surface."""

_SECRET_WORDS = ("secret", "token", "key", "password", "passwd", "authorization", "signature")
_WEBHOOK_PATH = re.compile(r"(/webhooks/aimusic/)[^/?#\s\"']+")
_URL = re.compile(r"https?://[^\s\"'<>]+")
_MAX_PAYLOAD_CHARS = 64 * 1024


def hide_callback_token(text: str) -> str:
    """`text` with the signed token of every `/webhooks/aimusic/<token>` URL cut out.

    The token lets anyone who holds it post callbacks for the task, so it never leaves the
    relay; the stored params keep the real URL, which the provider and the poller need."""
    if "/webhooks/aimusic/" not in text:  # the common case, without running the pattern
        return text
    return _WEBHOOK_PATH.sub(rf"\g<1>{HIDDEN_TOKEN}", text)


def is_secret_name(name: str) -> bool:
    """`webhook_secret`, `X-Api-Key`, `apiKey`, `Authorization`: any key naming a secret."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


class Redactor:
    """Scrubs known secret values and secret-named keys; one per page render."""

    def __init__(self, values: Iterable[str]) -> None:
        # Longest first, so a value that contains another is replaced whole.
        self._values = sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)

    def with_values(self, values: Iterable[str]) -> Redactor:
        """A copy that also hides `values` (a task's derived secret, say)."""
        return Redactor([*self._values, *values])

    def text(self, value: str) -> str:
        """`value` with every known secret replaced by `…`, callback tokens by `(hidden)`.

        Used on everything a page prints. It leaves other URLs whole, so a provider's signed
        media link still plays in `<audio>`; payloads shown as text also get `value()`'s
        query-parameter net."""
        for secret in self._values:
            if secret in value:
                value = value.replace(secret, HIDDEN)
        return hide_callback_token(value)

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value with secret-named keys hidden and strings scrubbed."""
        if isinstance(value, dict):
            return {
                str(k): HIDDEN if is_secret_name(str(k)) and v else self.value(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        if isinstance(value, str):
            return _URL.sub(lambda m: _scrub_query(m.group(0)), self.text(value))
        return value

    def pretty(self, raw: bytes | str | Any) -> str:
        """A payload for reading: JSON indented and redacted; other bytes as scrubbed text."""
        if isinstance(raw, bytes | str):
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            try:
                parsed = json.loads(text)
            except ValueError:
                return str(self.value(text[:_MAX_PAYLOAD_CHARS]))
        else:
            parsed = raw
        shown = json.dumps(self.value(parsed), indent=2, ensure_ascii=False, sort_keys=True)
        return shown[:_MAX_PAYLOAD_CHARS]


def _scrub_query(url: str) -> str:
    """Hide the values of secret-named query parameters (`?token=…`, `?api_key=…`)."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = [item.partition("=") for item in parts.query.split("&")]
    if not any(is_secret_name(unquote_plus(name)) for name, _, _ in pairs):
        return url
    query = "&".join(
        f"{name}{sep}{HIDDEN if sep and is_secret_name(unquote_plus(name)) else value}"
        for name, sep, value in pairs
    )
    return urlunsplit(parts._replace(query=query))
