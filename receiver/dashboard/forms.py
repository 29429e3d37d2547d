"""Reading the dashboard's forms: the submit form, replay targets, times; and error wording.

A form error is a readable sentence shown above the form, never a 500: the operator typed it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData

from receiver.errors import UpstreamError
from receiver.states import FAMILIES as ALL_FAMILIES
from receiver.states import TASK_STATES, Family
from receiver.submit import SubmitRequest
from receiver.upstream.statuses import upstream_status

__all__ = [
    "FormError",
    "SubmitForm",
    "TaskFilter",
    "parse_labels",
    "parse_since",
    "read_submit_form",
    "read_task_filter",
    "safe_back",
    "submit_request",
    "upstream_message",
]

FAMILIES = (Family.PRODUCER, Family.SONIC)
"""What the form offers; nuro is retired upstream."""


class FormError(ValueError):
    """A field the operator filled in wrongly; the message says which and how to fix it."""


@dataclasses.dataclass(frozen=True, slots=True)
class SubmitForm:
    """The submit form's fields as typed, to show them again after an error."""

    prompt: str = ""
    title: str = ""
    lyrics: str = ""
    instrumental: bool = False
    family: str = Family.PRODUCER
    labels: str = ""


def read_submit_form(form: FormData) -> SubmitForm:
    return SubmitForm(
        prompt=_field(form, "prompt").strip(),
        title=_field(form, "title").strip(),
        lyrics=_field(form, "lyrics").strip(),
        instrumental=_field(form, "instrumental") in ("on", "true", "1"),
        family=_field(form, "family") or Family.PRODUCER,
        labels=_field(form, "labels").strip(),
    )


def submit_request(fields: SubmitForm) -> SubmitRequest:
    """The same request `POST /api/tasks` and `aimusic-relay submit` build."""
    if not fields.prompt:
        raise FormError("Prompt: describe the song, e.g. “warm synthwave with a slow build”.")
    if fields.family not in FAMILIES:
        raise FormError(f"Family: choose {' or '.join(FAMILIES)}.")
    if len(fields.title) > 80:
        raise FormError("Title: at most 80 characters.")
    params: dict[str, Any] = {"sound": fields.prompt}
    if fields.title:
        params["title"] = fields.title
    if fields.lyrics:
        params["lyrics"] = fields.lyrics
    if fields.instrumental:
        params["make_instrumental"] = True
    labels = parse_labels(fields.labels)
    return SubmitRequest.model_validate(
        {"family": fields.family, "params": params, "labels": labels}
    )


def parse_labels(text: str) -> dict[str, str]:
    """`team=ads, mood=calm` (commas or new lines) → a dict."""
    labels: dict[str, str] = {}
    for item in text.replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise FormError(f"Labels: write “{item}” as key=value, e.g. team=ads.")
        labels[key.strip()] = value.strip()
    return labels


_LABEL_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
"""The label keys the task list filters on (the same rule as `GET /api/tasks?label=`)."""
_MAX_SEARCH = 200


@dataclasses.dataclass(frozen=True, slots=True)
class TaskFilter:
    """The task list's GET form, as typed (shown again) and as the store reads it."""

    state: str = ""
    family: str = ""
    label: str = ""
    q: str = ""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def query(self, **extra: int) -> str:
        """This filter as a query string (for the pager), empty fields left out."""
        fields = {"state": self.state, "family": self.family, "label": self.label, "q": self.q}
        return urlencode({**{k: v for k, v in fields.items() if v}, **extra})


def read_task_filter(query: Mapping[str, str]) -> tuple[TaskFilter, str | None]:
    """The filter from the query string and the first error in it (None when it is fine);
    with an error the fields are still returned, to be shown again in the form."""
    typed = TaskFilter(
        state=query.get("state", "").strip(),
        family=query.get("family", "").strip(),
        label=query.get("label", "").strip(),
        q=query.get("q", "").strip(),
    )
    try:
        if typed.state and typed.state not in TASK_STATES:
            raise FormError(f"State: choose one of {', '.join(TASK_STATES)}.")
        if typed.family and typed.family not in ALL_FAMILIES:
            raise FormError(f"Family: choose one of {', '.join(ALL_FAMILIES)}.")
        if len(typed.q) > _MAX_SEARCH:
            raise FormError(f"Search: at most {_MAX_SEARCH} characters.")
        labels = parse_labels(typed.label)
        bad = next((key for key in labels if not _LABEL_KEY.fullmatch(key)), None)
        if bad is not None:
            raise FormError(
                f"Labels: “{bad[:40]}” is not a label name (letters, digits, '_', '.', '-')."
            )
    except FormError as exc:
        return typed, str(exc)
    return dataclasses.replace(typed, labels=labels), None


def parse_since(text: str) -> float:
    """A `datetime-local` value (read as UTC) → unix seconds; empty → 0 (every dead letter)."""
    text = text.strip()
    if not text:
        return 0.0
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FormError("Since: give a date and time such as 2026-01-31T14:00 (UTC).") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def safe_back(value: Any, default: str = "/admin") -> str:
    """A redirect target from a form: only a path inside the dashboard (no open redirect)."""
    if not isinstance(value, str) or not value.startswith("/admin"):
        return default
    if "//" in value or "\\" in value or any(ord(c) < 32 for c in value):
        return default
    return value


def upstream_message(exc: UpstreamError) -> tuple[int, str]:
    """HTTP status (as `/api/tasks` maps it) and a sentence for the operator."""
    answer = upstream_status(exc)
    return answer.status, f"{answer.wording}: {exc.message}"


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""
