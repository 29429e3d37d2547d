"""`aimusic-relay chat register`: tell Discord the `/song` command and print the Slack manifest.

Discord learns slash commands only from an API call, so this bulk-overwrites the application's
global commands with `receiver.chat.manifest.discord_commands()` (idempotent: run it again after
an upgrade). Slack apps are created by a person pasting a manifest, so the Slack half only
prints it, filled in with `RELAY_PUBLIC_URL` and `[chat.slack] command`.

The manifest goes to stdout (so `chat register > manifest.yaml` is the manifest alone); what
Discord answered and every hint go to stderr. No token is ever printed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import typer

from receiver.cli.shell import app, err, fail, settings_for
from receiver.config import is_public_https
from receiver.errors import ConfigError

if TYPE_CHECKING:  # slack-sdk, PyNaCl, httpx and PyYAML: imported when the verb runs
    import httpx

    from receiver.chat.config import DiscordChat

__all__ = ["chat_app"]

REGISTER_TIMEOUT_S = 15.0

chat_app = typer.Typer(help="The Slack and Discord apps.", no_args_is_help=True)
app.add_typer(chat_app, name="chat")


@chat_app.command("register")
def register() -> None:
    """Register /song with Discord ([chat.discord]) and print the Slack app manifest."""
    from receiver.chat.config import ChatSettings, load_chat_settings
    from receiver.chat.manifest import slack_manifest_yaml

    settings = settings_for()
    path = settings.config_path
    if path is None:
        raise fail(
            "no relay.toml: set RELAY_CONFIG to the file with your [chat.slack] / "
            "[chat.discord] tables (nothing was sent)",
            2,
        )
    try:
        chat = load_chat_settings(path)
    except ConfigError as exc:
        raise fail(f"{exc} (nothing was sent)", 2) from None
    if chat == ChatSettings():
        raise fail(
            f"{path} has no [chat.slack] or [chat.discord] table: add one (README, Chat) "
            "and run this again (nothing was sent)",
            2,
        )
    if chat.discord is not None:
        registered = _register_discord(chat.discord)
        names = ", ".join(f"/{c.get('name', '?')} (id {c.get('id', '?')})" for c in registered)
        err.print(
            f"Discord: application {chat.discord.application_id} now has "
            f"{len(registered)} global command(s): {names}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        err.print(
            f"Discord: set the Interactions Endpoint URL to "
            f"{settings.public_url.rstrip('/')}/chat/discord/interactions",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    else:
        err.print("Discord: no [chat.discord] table, nothing registered", markup=False)
    command = chat.slack.command if chat.slack is not None else "/song"
    if not is_public_https(settings.public_url):
        err.print(
            f"warning: RELAY_PUBLIC_URL ({settings.public_url}) is not public HTTPS; Slack "
            "and Discord call only HTTPS request URLs, so set it before creating the apps",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    err.print(
        "Slack app manifest (api.slack.com/apps → Create New App → From a manifest):",
        markup=False,
        highlight=False,
    )
    typer.echo(slack_manifest_yaml(settings.public_url, command), nl=False)


def _register_discord(discord: DiscordChat) -> list[dict[str, Any]]:
    """PUT the global commands; the commands Discord stored, or exit with the fix."""
    import httpx

    from handlers.discord_api import DISCORD_API
    from receiver.chat.manifest import discord_commands

    base = (discord.api_base_url or DISCORD_API).rstrip("/")
    where = urlsplit(base).hostname
    url = f"{base}/applications/{discord.application_id}/commands"
    headers = {"Authorization": f"Bot {discord.bot_token.get_secret_value()}"}
    try:
        with httpx.Client(timeout=REGISTER_TIMEOUT_S, trust_env=False) as client:
            answer = client.put(url, json=discord_commands(), headers=headers)
    except httpx.HTTPError as exc:
        raise fail(
            f"cannot reach Discord at {where}: {type(exc).__name__}; check the network "
            "(and [chat.discord] api_base_url, if set)",
            1,
        ) from None
    if answer.status_code == 401:
        raise fail(
            f"Discord ({where}) refused the bot token (HTTP 401): check [chat.discord] "
            "bot_token (the application's Bot page in the Discord developer portal)",
            2,
        )
    if answer.status_code == 404:
        raise fail(
            f"Discord ({where}) knows no application {discord.application_id} (HTTP 404): "
            "check [chat.discord] application_id (APPLICATION ID on the General Information "
            "page)",
            2,
        )
    body = _json(answer)
    if answer.status_code != 200 or not isinstance(body, list):
        said = body.get("message") if isinstance(body, dict) else None
        raise fail(
            f"Discord ({where}) answered HTTP {answer.status_code} to the command "
            f"registration{f': {said}' if said else ''}; try again later",
            1,
        )
    return [c for c in body if isinstance(c, dict)]


def _json(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None
