"""The `[chat.slack]` and `[chat.discord]` tables of relay.toml: which chat apps are on.

They live in the same file as the handlers, with the same `${ENV}` values and the same kind of
error (`file:line: [chat.slack] key 'token': …`), so an operator learns one format. No table
means that app is off: its routes answer 404 saying how to switch it on.
"""

from __future__ import annotations

import re
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from receiver.config import http_url, interpolate, read_relay_toml, toml_line
from receiver.errors import ConfigError
from receiver.redact import MIN_SECRET_CHARS

__all__ = ["ChatSettings", "DiscordChat", "SlackChat", "load_chat_settings"]

_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")


class _ChatApp(BaseModel):
    """What both apps take: audio uploads, a test API address, and the guard rails on spend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    upload_audio: bool = False
    upload_max_mb: int = Field(default=20, ge=1, le=1000)
    """With `upload_audio`, a song's audio file larger than this is linked, not uploaded."""
    api_base_url: str | None = None
    user_daily_credits: int | None = Field(default=None, ge=1)
    channel_daily_credits: int | None = Field(default=None, ge=1)
    allowed_channels: list[str] = Field(default_factory=list)
    allowed_users: list[str] = Field(default_factory=list)
    user_songs_per_hour: int | None = Field(default=None, ge=1)

    @field_validator("api_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return http_url(value, "(leave it out for the real API)")


class SlackChat(_ChatApp):
    """`[chat.slack]`: the app's signing secret (verifies requests) and bot token (`xoxb-…`)."""

    signing_secret: SecretStr
    token: SecretStr
    command: str = "/song"

    @field_validator("command")
    @classmethod
    def _slash(cls, value: str) -> str:
        if not re.fullmatch(r"/[a-z0-9_-]{1,31}", value):
            raise ValueError("a slash command such as /song (lower case, no spaces)")
        return value


class DiscordChat(_ChatApp):
    """`[chat.discord]`: the application's public key (verifies interactions), its id and the
    bot token (posts when an interaction token has expired)."""

    public_key: str
    application_id: str = Field(min_length=1)
    bot_token: SecretStr
    allowed_roles: list[str] = Field(default_factory=list)
    upload_max_mb: int = Field(default=10, ge=1, le=1000)
    """Discord's attachment limit for a bot is 10 MiB (more in a boosted server, where this can
    be raised); a larger file is answered 413, so it is linked instead."""

    @field_validator("public_key")
    @classmethod
    def _hex_key(cls, value: str) -> str:
        key = value.strip()
        if not _HEX_KEY.fullmatch(key):
            raise ValueError(
                f"must be 64 hex characters (the PUBLIC KEY on the application's General "
                f"Information page in the Discord developer portal), got {len(key)} characters"
                + ("" if len(key) != 64 else " that are not all hex")
            )
        return key.lower()


class ChatSettings(BaseModel):
    """The chat apps this relay runs; None for one whose table is absent."""

    model_config = ConfigDict(frozen=True)

    slack: SlackChat | None = None
    discord: DiscordChat | None = None

    def secret_values(self) -> list[str]:
        """The signing secret and both tokens, for every redactor the settings' secrets feed."""
        found: list[SecretStr] = []
        if self.slack is not None:
            found += [self.slack.signing_secret, self.slack.token]
        if self.discord is not None:
            found.append(self.discord.bot_token)
        values = (secret.get_secret_value() for secret in found)
        return [value for value in values if len(value) >= MIN_SECRET_CHARS]


_APPS: dict[str, type[_ChatApp]] = {"slack": SlackChat, "discord": DiscordChat}


def load_chat_settings(path: Path | None, env: dict[str, str] | None = None) -> ChatSettings:
    """The `[chat.*]` tables of relay.toml (`RELAY_CONFIG`); none without the file."""
    if path is None:
        return ChatSettings()
    text, document = read_relay_toml(path)
    chat = document.get("chat")
    if chat is None:
        return ChatSettings()
    if not isinstance(chat, dict):
        raise ConfigError(f"{_where(path, text, None)}: chat: use [chat.slack] / [chat.discord]")
    for name in chat:
        if name not in _APPS:
            close = get_close_matches(name, list(_APPS))
            hint = f" (did you mean [chat.{close[0]}]?)" if close else ""
            raise ConfigError(
                f"{_where(path, text, name)}: unknown table [chat.{name}]{hint}; "
                "chat holds only [chat.slack] and [chat.discord]"
            )
    apps = {name: _build(name, raw, path, text, env) for name, raw in chat.items()}
    return ChatSettings(**apps)


def _build(name: str, raw: Any, path: Path, text: str, env: dict[str, str] | None) -> _ChatApp:
    label = f"[chat.{name}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{_where(path, text, name)}: {label} must be a table of keys")
    raw = interpolate(raw, f"{path}, {label}", env)
    model = _APPS[name]
    try:
        return model(**raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, model, path, text, name)) from None


def _describe(exc: ValidationError, model: type[_ChatApp], path: Path, text: str, name: str) -> str:
    problems = []
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else "?"
        where = _where(path, text, name, key)
        if error["type"] == "extra_forbidden":
            close = get_close_matches(key, list(model.model_fields))
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            message = f"unknown key{hint}; [chat.{name}] takes {', '.join(model.model_fields)}"
        else:
            message = error["msg"].removeprefix("Value error, ")  # pydantic's, says nothing
        problems.append(f"{where}: [chat.{name}] key {key!r}: {message}")
    return "; ".join(problems)


def _where(path: Path, text: str, table: str | None, key: str | None = None) -> str:
    """`file:line` of `key` inside `[chat.<table>]` (or of the header; best effort)."""
    header = rf"\s*\[\s*chat\s*\.\s*{re.escape(table)}\s*\]" if table else r"\s*\[\s*chat\b"
    line = toml_line(text, header, key)
    return f"{path}:{line}" if line else str(path)
