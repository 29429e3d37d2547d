"""The chat apps' HTTP endpoints: Slack's slash command and interactions, Discord's
interactions.

Every request is refused unless its platform signed it (401, nothing else happens); an app
whose `[chat.*]` table is absent answers 404 saying how to switch it on. A Slack command is
answered by `receiver.chat.slack_command`, a Slack button or modal by
`receiver.chat.slack_actions`, a Discord interaction by
`receiver.chat.discord_command`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.chat.config import SlackChat
from receiver.chat.discord_command import answer as discord_answer
from receiver.chat.slack_actions import interact
from receiver.chat.slack_command import answer
from receiver.chat.verify import verify_discord, verify_slack
from receiver.errors import SignatureError
from receiver.http.responses import BodyTooLarge, error, read_body
from receiver.logging import get_logger
from receiver.services import Services

__all__ = ["routes"]

log = get_logger("aimusic_relay.chat")

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
    verified = await _slack_form(request, services)
    if isinstance(verified, Response):
        return verified
    slack, form = verified
    fields = {key: values[0] for key, values in form.items()}
    # Slack escapes &, < and > in the text it sends; the parser reads what the person typed
    text = html.unescape(fields.get("text", "").strip())
    reply = await answer(services, slack, request.app.state.chat_jobs, fields, text)
    return JSONResponse({"response_type": "ephemeral", "text": reply})


async def slack_interactions(request: Request) -> Response:
    """A button or modal (`payload` JSON in a form), answered by `slack_actions` within
    Slack's 3 s: an empty 200, or a modal's field error."""
    services: Services = request.app.state.services
    verified = await _slack_form(request, services)
    if isinstance(verified, Response):
        return verified
    slack, form = verified
    try:
        payload = json.loads(form.get("payload", [""])[0])
    except ValueError:
        return error(400, "bad_payload", "the form field `payload` is not JSON")
    if not isinstance(payload, dict):
        return error(400, "bad_payload", "the form field `payload` is not a JSON object")
    reply = await interact(services, slack, request.app.state.chat_jobs, payload)
    return Response(status_code=200) if reply is None else JSONResponse(reply)


async def discord_interactions(request: Request) -> Response:
    """An interaction (JSON), answered by `receiver.chat.discord_command` within Discord's 3 s."""
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
    jobs = request.app.state.chat_jobs
    return JSONResponse(await discord_answer(services, discord, jobs, interaction))


async def _slack_form(
    request: Request, services: Services
) -> tuple[SlackChat, dict[str, list[str]]] | Response:
    """The Slack app and the form Slack signed, or the answer to send instead (404 without
    `[chat.slack]`, 413, 401)."""
    slack = services.chat.slack
    if slack is None:
        return _disabled("slack")
    secret = slack.signing_secret.get_secret_value()
    body = await _signed_body(request, "slack", lambda h, b: verify_slack(secret, h, b))
    if isinstance(body, Response):
        return body
    return slack, parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


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


def _disabled(app: str) -> Response:
    return error(404, "chat_disabled", _ENABLE[app])


routes = [
    Route("/chat/slack/commands", slack_commands, methods=["POST"]),
    Route("/chat/slack/interactions", slack_interactions, methods=["POST"]),
    Route("/chat/discord/interactions", discord_interactions, methods=["POST"]),
]
