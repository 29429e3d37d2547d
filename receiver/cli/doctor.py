"""`aimusic-relay doctor`: is this deployment able to work, and if not, what to change.

Each check reports ok, warn or fail with one line of advice. Checks touch the real things
(the database, the provider's credits endpoint, the public URL, each handler's destination)
but never write anything a person would notice: no song is created, no chat message posted.
Every detail passes through `receiver.redact` with all the secrets we know, so a secret can
never be printed, even inside an error message from a library.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from handlers.registry import HandlerRegistry
from receiver.chat.checks import check_discord, check_slack
from receiver.chat.config import ChatSettings, load_chat_settings
from receiver.cli.doctor_checks import Check, check_handler, handler_secrets
from receiver.cli.doctor_relay import (
    public_url_check,
    secret_checks,
    settings_check,
    store_check,
    upstream_check,
)
from receiver.config import Settings, load_settings
from receiver.delivery.handler_set import HandlerSet, load_handler_set
from receiver.errors import ConfigError
from receiver.redact import MASK, Redactor, url_passwords

__all__ = ["Check", "run_doctor"]


async def run_doctor(progress: Callable[[str], None] | None = None) -> list[Check]:
    """Run every check against the environment of this process; never raises for a finding."""
    tell = progress or (lambda _name: None)
    try:
        settings = load_settings(read_only=True)  # doctor looks; it never writes a key file
    except ConfigError as exc:
        failed = Check("settings", "fail", str(exc), "fix the environment variable named above")
        return [_redacted(failed, Redactor(_environment_secrets(), MASK))]
    checks = [settings_check(settings)]
    tell("relay.toml")
    handler_set: HandlerSet | None = None
    try:
        handler_set = load_handler_set(settings.config_path, HandlerRegistry.with_plugins())
    except ConfigError as exc:
        checks.append(Check("handlers", "fail", str(exc), "fix relay.toml at the line named"))
    else:
        names = ", ".join(f"{h.name} ({h.spec.type})" for h in handler_set)
        names = names or "no [[handlers]] of its own (the [chat.*] apps answer with theirs)"
        checks.append(Check("handlers", "ok", f"{names} from {handler_set.source}"))
    tell("database")
    checks.append(await store_check(settings))
    tell("AI Music API key")
    checks.append(await upstream_check(settings))
    tell("public URL")
    checks.append(await public_url_check(settings))
    checks.extend(secret_checks(settings))
    for configured in handler_set or ():
        tell(f"handler {configured.name}")
        checks.append(await check_handler(configured))
    chat = await _chat_checks(settings, checks, tell)
    secrets = [*settings.secret_values(), *chat.secret_values(), *_environment_secrets()]
    for configured in handler_set or ():
        secrets.extend(handler_secrets(configured))
    redactor = Redactor(secrets, MASK)
    return [_redacted(check, redactor) for check in checks]


async def _chat_checks(
    settings: Settings, checks: list[Check], tell: Callable[[str], None]
) -> ChatSettings:
    """Append a line per configured chat app (or one failed `chat` line for a broken table)
    and return the apps, whose secrets the report must hide."""
    try:
        chat = load_chat_settings(settings.config_path)
    except ConfigError as exc:
        checks.append(Check("chat", "fail", str(exc), "fix relay.toml at the line named"))
        return ChatSettings()
    if chat.slack is not None:
        tell("chat slack")
        found = await check_slack(chat.slack, settings.public_url)
        checks.append(Check("chat slack", found.status, found.detail, found.advice))
    if chat.discord is not None:
        tell("chat discord")
        found = await check_discord(chat.discord, settings.public_url)
        checks.append(Check("chat discord", found.status, found.detail, found.advice))
    return chat


def _redacted(check: Check, redactor: Redactor) -> Check:
    """The check with every known secret in its detail and advice shown as `***`."""
    return dataclasses.replace(
        check, detail=redactor.scrub(check.detail), advice=redactor.scrub(check.advice)
    )


def _environment_secrets() -> list[str]:
    """Secret values straight from the environment, and the password inside DATABASE_URL:
    usable even when the settings do not load (their error may quote a variable)."""
    names = ("AIMUSIC_API_KEY", "AIMUSIC_WEBHOOK_SECRET", "RELAY_SECRET_KEY", "RELAY_ADMIN_TOKEN")
    found = [part for name in names for part in os.environ.get(name, "").split(",")]
    return [*filter(None, found), *url_passwords(os.environ.get("DATABASE_URL", ""))]
