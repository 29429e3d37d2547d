"""The handler file: which handlers exist, which events each one takes, and how it retries."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from handlers.base import Handler
from handlers.registry import HandlerRegistry
from receiver.config import interpolate, read_relay_toml, toml_line
from receiver.delivery.alerts import DEAD_KIND
from receiver.errors import ConfigError
from receiver.retry import Backoff
from receiver.states import EventKind

__all__ = ["ConfiguredHandler", "HandlerSet", "HandlerSpec", "add_handlers", "load_handler_set"]

DEFAULT_EVENTS: list[EventKind] = [EventKind.COMPLETED, EventKind.FAILED, EventKind.TIMED_OUT]
TOP_LEVEL_KEYS = frozenset({"handlers", "chat"})
"""What relay.toml holds: `[[handlers]]` here, the `[chat.*]` tables in `receiver.chat`."""


class HandlerSpec(BaseModel):
    """The keys every `[[handlers]]` entry may have; the rest belong to the handler's Config."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    type: str = Field(min_length=1)
    events: list[EventKind] | None = None
    after: list[str] = Field(default_factory=list)
    platforms: list[str] | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_base_s: float = Field(default=2.0, gt=0)
    backoff_max_s: float = Field(default=600.0, gt=0)
    timeout_s: float = Field(default=120.0, gt=0)
    concurrency: int = Field(default=4, ge=1, le=256)
    rate_limit_per_s: float | None = Field(default=None, gt=0)

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


@dataclasses.dataclass(frozen=True, slots=True)
class ConfiguredHandler:
    """One `[[handlers]]` entry, built and ready."""

    spec: HandlerSpec
    handler: Handler
    events: tuple[str, ...]
    """The events it takes: `events` from the file, else its type's default, else ours."""
    stage: int = 0
    """0, or one more than the highest stage among the handlers it runs `after`."""

    @property
    def name(self) -> str:
        return self.spec.name

    def matches(self, kind: str, platform: str, labels: Mapping[str, str]) -> bool:
        spec = self.spec
        if kind not in self.events:
            return False
        if spec.platforms is not None and platform not in spec.platforms:
            return False
        return all(labels.get(key) == value for key, value in spec.labels.items())

    def retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter, never sooner than the destination asked."""
        return self.backoff.delay(attempt, floor=retry_after)

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.spec.backoff_base_s, self.spec.backoff_max_s, "full")


@dataclasses.dataclass(frozen=True, slots=True)
class HandlerSet:
    """The configured handlers, in file order (a later handler may use an earlier one's result)."""

    handlers: tuple[ConfiguredHandler, ...]
    source: str

    def __iter__(self) -> Iterator[ConfiguredHandler]:
        return iter(self.handlers)

    def get(self, name: str) -> ConfiguredHandler | None:
        return next((h for h in self.handlers if h.name == name), None)

    def route(
        self,
        kind: str,
        platform: str,
        labels: Mapping[str, str],
        only: Sequence[str] | None = None,
    ) -> list[tuple[str, int]]:
        """(name, stage) of the handlers this event goes to; `only` narrows to a task's choice."""
        return [
            (h.name, h.stage)
            for h in self.handlers
            if h.matches(kind, platform, labels) and (only is None or h.name in only)
        ]

    def route_dead(
        self, kind: str, handler: str, platform: str, labels: Mapping[str, str]
    ) -> list[tuple[str, int]]:
        """Who hears that `handler`'s delivery of a `kind` event was dead-lettered: every
        handler taking `delivery.dead` (its platform and label filters apply; a task's own
        handler choice does not, an alert is for the operator), except `handler` itself, which
        would most likely fail again. Nobody when the dead delivery was itself such an alert,
        so alerts never loop."""
        if kind == DEAD_KIND:
            return []
        return [
            (name, stage)
            for name, stage in self.route(DEAD_KIND, platform, labels)
            if name != handler
        ]


def load_handler_set(
    path: Path | None, registry: HandlerRegistry, env: dict[str, str] | None = None
) -> HandlerSet:
    """Read and build the handlers; without a file, one disk handler writing to `./songs`."""
    if path is None:
        entries: list[dict[str, Any]] = [{"name": "disk", "type": "disk", "path": "songs"}]
        return _build(entries, registry, "built-in default (no relay.toml)", "", env)
    text, document = read_relay_toml(path)
    unknown = sorted(set(document) - TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(_unknown_top_level(path, text, unknown[0]))
    entries = document.get("handlers", [])
    # A file with only chat apps is whole: their replies are the relay's own handlers.
    if not isinstance(entries, list) or (not entries and not document.get("chat")):
        raise ConfigError(
            f"{path}: no [[handlers]] entries; add at least one (or a [chat.slack] / "
            "[chat.discord] table, whose replies need none)"
        )
    return _build(entries, registry, str(path), text, env)


def add_handlers(
    handlers: HandlerSet, entries: list[dict[str, Any]], registry: HandlerRegistry, owner: str
) -> HandlerSet:
    """`handlers` and, after them, entries the relay adds itself (a chat app's replies), built
    like the file's. `owner` says who adds them, so a file entry with a reserved name is told
    what reserves it instead of failing as a plain duplicate."""
    for entry in entries:
        if handlers.get(entry["name"]) is not None:
            raise ConfigError(
                f"{handlers.source}: handler name {entry['name']!r} is reserved for {owner}; "
                "give that [[handlers]] entry another name"
            )
    added = _build(entries, registry, owner, "", {})
    return HandlerSet(handlers=handlers.handlers + added.handlers, source=handlers.source)


def _build(
    entries: list[dict[str, Any]],
    registry: HandlerRegistry,
    source: str,
    text: str,
    env: dict[str, str] | None,
) -> HandlerSet:
    built: list[ConfiguredHandler] = []
    for index, raw in enumerate(entries):
        label = f"handler #{index + 1} ({raw.get('name', '?')!r})"
        raw = interpolate(raw, f"{source}, {label}", env)
        try:
            spec = HandlerSpec(**raw)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, source, text, index, label)) from None
        if any(h.name == spec.name for h in built):
            where = _where(source, text, index, "name")
            raise ConfigError(
                f"{where}: handler name {spec.name!r} is used twice; names are unique"
            )
        try:
            handler_class = registry.resolve(spec.type)
        except ConfigError as exc:  # give it the file:line and handler every other error has
            where = _where(source, text, index, "type")
            raise ConfigError(f"{where}: {label} key 'type': {exc}") from None
        try:
            config = handler_class.Config(**spec.options())
        except ValidationError as exc:
            raise ConfigError(_describe(exc, source, text, index, label)) from None
        stages = {h.name: h.stage for h in built}
        for dependency in spec.after:
            if dependency not in stages:
                where = _where(source, text, index, "after")
                raise ConfigError(
                    f"{where}: {label} key 'after': {dependency!r} is not a handler declared "
                    "above this one (a handler can only wait for earlier ones)"
                )
        events = spec.events or list(getattr(handler_class, "default_events", DEFAULT_EVENTS))
        built.append(
            ConfiguredHandler(
                spec=spec,
                handler=handler_class(spec.name, config),
                events=tuple(events),
                stage=1 + max((stages[d] for d in spec.after), default=-1),
            )
        )
    return HandlerSet(handlers=tuple(built), source=source)


def _describe(exc: ValidationError, source: str, text: str, index: int, label: str) -> str:
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "?"
        where = _where(source, text, index, key.split(".")[0])
        message = error["msg"].removeprefix("Value error, ")  # pydantic's prefix says nothing
        problems.append(f"{where}: {label} key {key!r}: {message}")
    return "; ".join(problems)


def _unknown_top_level(path: Path, text: str, key: str) -> str:
    """`file:line: unknown top-level key 'handler' (did you mean [[handlers]]?) …`: the line
    of its table header (`[[key]]`, `[key]`) or assignment (`key = …`), the first found."""
    pattern = re.compile(rf"\s*(\[\[?\s*{re.escape(key)}\s*[.\]]|{re.escape(key)}\s*[.=])")
    lines = text.splitlines()
    line_no = next((n + 1 for n, line in enumerate(lines) if pattern.match(line)), None)
    where = f"{path}:{line_no}" if line_no else str(path)
    close = get_close_matches(key, sorted(TOP_LEVEL_KEYS))
    hint = {"handlers": " (did you mean [[handlers]]?)", "chat": " (did you mean [chat.*]?)"}
    return (
        f"{where}: unknown top-level key {key!r}{hint[close[0]] if close else ''}; "
        "relay.toml holds only [[handlers]] and [chat.slack] / [chat.discord]"
    )


def _where(source: str, text: str, index: int, key: str) -> str:
    """`file:line` of `key` inside the index-th `[[handlers]]` table (best effort)."""
    line = toml_line(text, r"\s*\[\[\s*handlers\s*\]\]", key, index) if text else None
    return f"{source}:{line}" if line else source
