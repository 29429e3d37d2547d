"""The one place that decides what a secret looks like and how it is hidden.

Logs, the dashboard, API rows, the CLI and `doctor` all redact through here, so a word added to
`SECRET_WORDS` (or a fix to the token pattern) reaches every surface at once; three copies with
three word lists used to drift apart.

Two nets, because either alone leaks: by *key name* (a payload's `webhook_secret`, an
`Authorization` header, an `api_key` we have never seen the value of) and by *value* (our own
secrets wherever they turn up, e.g. inside an error message). Two shapes need no known value:
a callback URL carries a signed token in its path, which `hide_callback_token` replaces by
`(hidden)` so the URL stays readable but cannot be replayed; and a URL's secret-named query
parameters (`?token=…`). Each surface keeps its placeholder: `…` on the dashboard, `***` in
logs and doctor's report, `(hidden)` for a callback token everywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit

__all__ = [
    "HIDDEN",
    "HIDDEN_TOKEN",
    "MASK",
    "MIN_SECRET_CHARS",
    "SECRET_WORDS",
    "Redactor",
    "hide_callback_token",
    "is_secret_name",
    "url_passwords",
]

HIDDEN = "…"
"""What a hidden value is shown as on the dashboard."""
MASK = "***"
"""What a hidden value is shown as in logs and in doctor's report."""
HIDDEN_TOKEN = "(hidden)"  # noqa: S105 - the placeholder shown instead of a token, not one
"""What a callback URL's signed token is shown as, on every surface."""
MIN_SECRET_CHARS = 4
"""Shorter values are not hidden by value: replacing every `ab` garbles any text, and where
the gaps fall would show the secret anyway. Settings use it to drop such parts too."""
SECRET_WORDS = (
    "authorization",
    "cookie",
    "key",
    "passwd",
    "password",
    "secret",
    "signature",
    "token",
)
"""A key whose lower-cased name contains one of these names a secret (`key` covers `api_key`,
`apiKey`, `X-Api-Key`)."""

_TOKEN_PREFIX = "/webhooks/aimusic/"  # noqa: S105 - a route prefix, not a password
_TOKEN_PATH = re.compile(r"(/webhooks/aimusic/)[^/?#\s\"'<>]+")
"""The path segment after the prefix: a token never holds `/`, quotes, spaces or `<>`, so the
match ends where a log line, a JSON string or markup goes on."""
_URL = re.compile(r"https?://[^\s\"'<>]+")
_MAX_PAYLOAD_CHARS = 64 * 1024


def hide_callback_token(text: str) -> str:
    """`text` with the signed token of every `/webhooks/aimusic/<token>` URL cut out.

    The token lets anyone who holds it post callbacks for the task, so it never leaves the
    relay; the stored params keep the real URL, which the provider and the poller need."""
    if _TOKEN_PREFIX not in text:  # the common case, without running the pattern
        return text
    return _TOKEN_PATH.sub(rf"\g<1>{HIDDEN_TOKEN}", text)


def url_passwords(url: str) -> list[str]:
    """The password in `scheme://user:password@host` (a DATABASE_URL's) as written and
    percent-decoded, to hide by value wherever either turns up; none if the URL has none."""
    try:
        password = urlsplit(url).password
    except ValueError:  # a malformed URL: its error is shown by whoever parses it for real
        return []
    return list(dict.fromkeys((password, unquote(password)))) if password else []


def is_secret_name(name: str) -> bool:
    """`webhook_secret`, `X-Api-Key`, `apiKey`, `Authorization`: any key naming a secret."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


class Redactor:
    """Hides known secret values and secret-named keys: one per page render, per logging setup,
    per doctor run; `hidden` is what a hidden value reads as on that surface."""

    __slots__ = ("_hidden", "_values")

    def __init__(self, values: Iterable[str] = (), hidden: str = HIDDEN) -> None:
        # Longest first, so a value that contains another is replaced whole.
        unique = {v for v in values if len(v) >= MIN_SECRET_CHARS}
        self._values = sorted(unique, key=len, reverse=True)
        self._hidden = hidden

    def with_values(self, values: Iterable[str]) -> Redactor:
        """A copy that also hides `values` (a task's derived secret, say)."""
        return Redactor([*self._values, *values], self._hidden)

    def text(self, value: str) -> str:
        """`value` with every known secret hidden and callback tokens replaced by `(hidden)`.

        Used on everything a page prints. It leaves other URLs whole, so a provider's signed
        media link still plays in `<audio>`; `scrub` adds the query-parameter net."""
        for secret in self._values:
            if secret in value:
                value = value.replace(secret, self._hidden)
        return hide_callback_token(value)

    def scrub(self, value: str) -> str:
        """`text`, and the values of secret-named query parameters in any URL hidden too:
        for text only read (logs, doctor, payloads), where no link has to keep working."""
        value = self.text(value)
        if "://" not in value:  # the common case, without running the pattern
            return value
        return _URL.sub(lambda found: _scrub_query(found.group(0), self._hidden), value)

    def field(self, name: str, value: Any) -> Any:
        """What `value` is shown as under the key `name`: hidden whole when the name is a
        secret's (an empty value is shown, there is nothing in it to hide), else `value()`."""
        if value and is_secret_name(name):
            return self._hidden
        return self.value(value)

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value with secret-named keys hidden at any depth and every
        string scrubbed."""
        if isinstance(value, dict):
            return {str(k): self.field(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        if isinstance(value, str):
            return self.scrub(value)
        return value

    def pretty(self, raw: bytes | str | Any) -> str:
        """A payload for reading: JSON indented and redacted; other bytes as scrubbed text."""
        if isinstance(raw, bytes | str):
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            try:
                parsed = json.loads(text)
            except ValueError:
                return self.scrub(text[:_MAX_PAYLOAD_CHARS])
        else:
            parsed = raw
        shown = json.dumps(self.value(parsed), indent=2, ensure_ascii=False, sort_keys=True)
        return shown[:_MAX_PAYLOAD_CHARS]


def _scrub_query(url: str, hidden: str) -> str:
    """Hide the values of secret-named query parameters (`?token=…`, `?api_key=…`).

    Split by hand rather than with `urlsplit`, which raises on a malformed host: a log line
    quoting a broken URL must still be written, and scrubbed."""
    base, mark, rest = url.partition("?")
    query, hash_mark, fragment = rest.partition("#")
    if not query:
        return url
    pairs = [item.partition("=") for item in query.split("&")]
    if not any(is_secret_name(unquote_plus(name)) for name, _, _ in pairs):
        return url
    query = "&".join(
        f"{name}{sep}{hidden if sep and is_secret_name(unquote_plus(name)) else value}"
        for name, sep, value in pairs
    )
    return f"{base}{mark}{query}{hash_mark}{fragment}"
