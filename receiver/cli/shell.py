"""What every `aimusic-relay` command shares: the Typer app, the two consoles, and the one way a
user error ends a command (one line on stderr, exit 2 for configuration, 1 for everything else,
no traceback).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from receiver.config import Settings, load_settings
from receiver.errors import ConfigError, RelayError
from receiver.logging import configure_logging

__all__ = ["api_key", "app", "db_app", "err", "fail", "out", "run", "settings_for"]

T = TypeVar("T")

app = typer.Typer(
    name="aimusic-relay",
    help="Submit AI Music API tasks and route their signed callbacks to handlers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
err = Console(stderr=True)
out = Console()


def fail(message: str, code: int) -> typer.Exit:
    """Print `error: <message>` (the message verbatim: it may quote user input or a literal
    `[[handlers]]`, which Rich would otherwise swallow as markup); the caller raises it."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _exit_code(exc: RelayError) -> int:
    """2 when the user must change the input (a setting, a name that does not exist), else 1."""
    from receiver.submit import SubmitRefused  # here, not at the top: it pulls in the store

    return 2 if isinstance(exc, ConfigError | SubmitRefused) else 1


def api_key(settings: Settings) -> str:
    """The key, or exit 2 before anything is stored or sent: a missing one is configuration."""
    if settings.aimusic_api_key is None:
        raise fail(
            "AIMUSIC_API_KEY is not set: get a key from your AI Music API dashboard and "
            "export it (nothing was sent)",
            2,
        )
    return settings.aimusic_api_key.get_secret_value()


def settings_for(**overrides: Any) -> Settings:
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    configure_logging(settings.relay_log_level, settings.relay_log_format, settings.secret_values())
    return settings


def run(coroutine_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return asyncio.run(coroutine_factory())
    except RelayError as exc:
        raise fail(str(exc), _exit_code(exc)) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
