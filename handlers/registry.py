"""Which handler types exist: everything in the `aimusic_relay.handlers` entry-point group,
registered into a registry the app owns (no global singleton). The built-ins are found the
same way as any plugin, through this distribution's own entry points in pyproject.toml.

Types are imported only when a configured handler asks for them, so an unused plugin with a
heavy dependency costs nothing, and a broken one fails with its name attached.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from receiver.errors import ConfigError

__all__ = ["DISTRIBUTION", "ENTRY_POINT_GROUP", "HandlerRegistry"]

ENTRY_POINT_GROUP = "aimusic_relay.handlers"
DISTRIBUTION = "aimusic-relay"
"""The distribution whose entry points register the built-in types."""

_NOT_INSTALLED = (
    f"the {DISTRIBUTION} distribution is not installed, so its built-in handler types "
    "(disk, slack, s3, apprise, forward) are not registered: run `pip install -e .` in the "
    "checkout (or `pip install aimusic-relay`)"
)


class HandlerRegistry:
    """Maps a `type` name from relay.toml to the class that implements it."""

    def __init__(self) -> None:
        self._targets: dict[str, str] = {}
        self._distributions: set[str] = set()

    def register(self, type_name: str, target: str) -> None:
        """Add `type_name` → `"module:Class"`; a second, different target is an error."""
        existing = self._targets.get(type_name)
        if existing is not None and existing != target:
            raise ConfigError(
                f"handler type {type_name!r} is registered twice: by {existing} and by {target}; "
                "uninstall one of the plugins"
            )
        self._targets[type_name] = target

    @classmethod
    def with_plugins(cls) -> HandlerRegistry:
        """Every installed type: the built-ins and each plugin distribution's."""
        return cls.from_entry_points(entry_points(group=ENTRY_POINT_GROUP))

    @classmethod
    def from_entry_points(cls, entries: Iterable[EntryPoint]) -> HandlerRegistry:
        """A registry of exactly these entry points (`with_plugins` passes the installed ones)."""
        registry = cls()
        for entry in entries:
            registry.register(entry.name, entry.value)
            if entry.dist is not None:
                registry._distributions.add(_normalise(entry.dist.name))
        return registry

    def types(self) -> dict[str, str]:
        """Installed type names and where each comes from."""
        return dict(sorted(self._targets.items()))

    def resolve(self, type_name: str) -> Any:
        """The class for `type_name`, or for an explicit `"package.module:Class"`."""
        target = self._targets.get(type_name)
        if target is None:
            if ":" not in type_name and DISTRIBUTION not in self._distributions:
                raise ConfigError(f"unknown handler type {type_name!r}: {_NOT_INSTALLED}")
            if ":" not in type_name:
                known = ", ".join(sorted(self._targets)) or "none"
                close = difflib.get_close_matches(type_name.lower(), self._targets, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"unknown handler type {type_name!r}{hint}; installed types: {known}; "
                    "or give 'package.module:Class'"
                )
            target = type_name
        module_name, _, attribute = target.partition(":")
        try:
            module = importlib.import_module(module_name)
            handler_class = getattr(module, attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"handler type {type_name!r} ({target}) cannot be loaded: {exc}"
            ) from exc
        if not isinstance(getattr(handler_class, "Config", None), type):
            raise ConfigError(f"handler type {type_name!r} ({target}) has no pydantic Config model")
        return handler_class


def _normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them (`AIMusic_Relay` is `aimusic-relay`)."""
    return re.sub(r"[-_.]+", "-", name).lower()
