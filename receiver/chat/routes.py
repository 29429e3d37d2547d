"""The chat apps' HTTP endpoints: Slack's slash command and interactions, Discord's
interactions.

Every request is refused unless its platform signed it (401, nothing else happens); an app
whose `[chat.*]` table is absent answers 404 saying how to switch it on. A Slack command is
answered by `receiver.chat.slack_command` (help, credits, songs); Discord gets help or a PONG.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.chat.commands import not_yet_text, usage
from receiver.chat.config import SlackChat
from receiver.chat.slack_command import answer
from receiver.chat.verify import verify_discord, verify_slack
from receiver.errors import SignatureError
from receiver.http.responses import BodyTooLarge, error, read_body
from receiver.logging import get_logger
from receiver.services import Services

__all__ = ["routes"]

log = get_logger("aimusic_relay.chat")

DISCORD_PING, DISCORD_COMMAND = 1, 2
DISCORD_PONG, DISCORD_MESSAGE = 1, 4
DISCORD_EPHEMERAL = 64
"""Discord's message flag for a reply only the person who asked sees."""
_ENABLE = {
    "slack": "add a [chat.slack] table to relay.toml (signing_secret, token) to enable the "
    "Slack app",
    "discord": "add a [chat.discord] table to relay.toml (public_key, application_id, "
    "bot_token) to enable the Discord app",
}

Verify = Callable[[Mapping[str, str], bytes], None]


async def slack_commands(request: Request) -> Response:
    """A slash command (form-encoded), answered ephemerally within Slack's 3 s."""
    services: Services = request.app.state.services
    slack = services.chat.slack
    if slack is None:
        return _disabled("slack")
    body = await _slack_body(request, slack)
    if isinstance(body, Response):
        return body
    form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    fields = {key: values[0] for key, values in form.items()}
    # Slack escapes &, < and > in the text it sends; the parser reads what the person typed
    text = html.unescape(fields.get("text", "").strip())
    reply = await answer(services, slack, request.app.state.chat_jobs, fields, text)
    return JSONResponse({"response_type": "ephemeral", "text": reply})


async def slack_interactions(request: Request) -> Response:
    """A button or modal (`payload` JSON in a form): verified and acknowledged, nothing more."""
    slack = request.app.state.services.chat.slack
    if slack is None:
        return _disabled("slack")
    body = await _slack_body(request, slack)
    if isinstance(body, Response):
        return body
    return Response(status_code=200)  # Slack wants an empty 200 within 3 s


async def discord_interactions(request: Request) -> Response:
    """An interaction (JSON): PING → PONG, `/song help` → the usage, the rest not yet."""
    services: Services = request.app.state.services
    discord = services.chat.discord
    if discord is None:
        return _disabled("discord")
    key = discord.public_key
    body = await _signed_body(request, "discord", lambda h, b: verify_discord(key, h, b))
    if isinstance(body, Response):
        return body
    try:
        interaction = json.loads(body)
    except ValueError:
        return error(400, "bad_json", "the interaction is not JSON")
    if not isinstance(interaction, dict):
        return error(400, "bad_json", "the interaction is not a JSON object")
    kind = interaction.get("type")
    if kind == DISCORD_PING:
        return JSONResponse({"type": DISCORD_PONG})
    asked_help = kind == DISCORD_COMMAND and _asks_help(interaction.get("data"))
    log.info("chat command", app="discord", answer="help" if asked_help else "not_yet")
    reply = usage() if asked_help else not_yet_text()
    return JSONResponse(
        {"type": DISCORD_MESSAGE, "data": {"content": reply, "flags": DISCORD_EPHEMERAL}}
    )


async def _slack_body(request: Request, slack: SlackChat) -> bytes | Response:
    """The raw body Slack signed, or the refusal to send instead (413 or 401)."""
    secret = slack.signing_secret.get_secret_value()
    return await _signed_body(request, "slack", lambda h, b: verify_slack(secret, h, b))


async def _signed_body(request: Request, app: str, verify: Verify) -> bytes | Response:
    """The raw body when the platform signed it, else the refusal to send (413 or 401)."""
    settings = request.app.state.services.settings
    limit = settings.relay_max_body_bytes
    try:
        body = await read_body(request, limit, settings.relay_body_timeout_s)
    except BodyTooLarge:
        return error(413, "too_large", f"body over {limit} bytes")
    try:
        verify(request.headers, body)
    except SignatureError as exc:
        log.warning("chat request refused", app=app, path=request.url.path, reason=exc.reason)
        return error(401, "bad_signature", exc.detail)
    return body


def _asks_help(data: Any) -> bool:
    """`/song`, `/song help` (a subcommand) or `/song prompt:help`: what Slack's empty or
    `help` text is."""
    if not isinstance(data, dict) or data.get("name") != "song":
        return False
    options = data.get("options") or []
    if not isinstance(options, list):
        return False
    for option in options:
        if not isinstance(option, dict):
            return False
        value = option.get("value")
        if option.get("name") == "help" or (isinstance(value, str) and value.strip() == "help"):
            return True
    return not options


def _disabled(app: str) -> Response:
    return error(404, "chat_disabled", _ENABLE[app])


routes = [
    Route("/chat/slack/commands", slack_commands, methods=["POST"]),
    Route("/chat/slack/interactions", slack_interactions, methods=["POST"]),
    Route("/chat/discord/interactions", discord_interactions, methods=["POST"]),
]
