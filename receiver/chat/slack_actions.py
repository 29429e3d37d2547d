"""The Slack app's answer to a verified interaction: a song's button, or the Remix modal.

Slack wants an answer within 3 s and shows the clicker nothing from it, so the HTTP answer is an
empty 200 (or, for a modal without a style, the field's error), and what the clicker reads is
said afterwards, ephemerally, through the payload's `response_url`. Regenerate and Extend are
answered by `actions.act`; Remix first opens a modal (`views.open`, with the payload's
`trigger_id`) asking for the style, and its submission is answered the same way. A click
Slack sends twice finds the task its first copy made (the fixed task id), so it submits once.
"""

from __future__ import annotations

import json
from collections.abc import Coroutine, Mapping
from typing import Any

from handlers.chat_buttons import Button, decode, encode
from handlers.slack_auth import web_client
from receiver.chat.actions import MAX_STYLE, act
from receiver.chat.asking import Asker, Tell
from receiver.chat.config import SlackChat
from receiver.chat.jobs import ChatJobs
from receiver.chat.slack_command import APP, response_url_teller
from receiver.logging import get_logger
from receiver.services import Services

__all__ = ["REMIX_CALLBACK", "STYLE_ACTION", "STYLE_BLOCK", "interact", "remix_view"]

log = get_logger("aimusic_relay.chat")

REMIX_CALLBACK = "song.remix"
"""The Remix modal's `callback_id`: how its submission is told from any other view."""
STYLE_BLOCK, STYLE_ACTION = "style", "style"
"""Where the modal's style field sits (`view.state.values[block][action]`)."""
VIEWS_TIMEOUT_S = 3
"""`views.open` must reach Slack within 3 s of the click, or its `trigger_id` has expired."""
_NO_STYLE = "Say which style to remix it in, such as “bossa nova, soft vocals”."


async def interact(
    services: Services, slack: SlackChat, jobs: ChatJobs, payload: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Handle one interaction payload; the JSON to answer with, or None for an empty 200."""
    kind = payload.get("type")
    if kind == "block_actions":
        _clicked(services, slack, jobs, payload)
        return None
    if kind == "view_submission" and _view(payload).get("callback_id") == REMIX_CALLBACK:
        return _remix_submitted(services, slack, jobs, payload)
    log.info("chat interaction ignored", app=APP, kind=str(kind)[:40])
    return None


def remix_view(button: Button, channel: str, response_url: str) -> dict[str, Any]:
    """The modal asking for the remix's style. Its `private_metadata` (which Slack hands back
    on submission, to this app only) carries the button, the channel to answer in, and the
    click's `response_url`, through which the clicker hears the outcome."""
    meta = {"button": encode(button), "channel": channel, "response_url": response_url}
    return {
        "type": "modal",
        "callback_id": REMIX_CALLBACK,
        "title": {"type": "plain_text", "text": "Remix the song"},
        "submit": {"type": "plain_text", "text": "Remix"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": json.dumps(meta),
        "blocks": [
            {
                "type": "input",
                "block_id": STYLE_BLOCK,
                "label": {"type": "plain_text", "text": "New style"},
                "hint": {"type": "plain_text", "text": "The same lyrics, sung in this style."},
                "element": {
                    "type": "plain_text_input",
                    "action_id": STYLE_ACTION,
                    "max_length": MAX_STYLE,
                    "placeholder": {"type": "plain_text", "text": "bossa nova, soft vocals"},
                },
            }
        ],
    }


def _clicked(
    services: Services, slack: SlackChat, jobs: ChatJobs, payload: Mapping[str, Any]
) -> None:
    """A button: Regenerate/Extend are acted on, Remix opens its modal; all after the 200."""
    actions = payload.get("actions")
    first = actions[0] if isinstance(actions, list) and actions else {}
    button = decode(str(first.get("action_id") or "")) if isinstance(first, dict) else None
    if button is None:
        log.info("chat interaction ignored", app=APP, kind="block_actions")
        return
    asker = _asker(payload, _channel(payload))
    response_url = str(payload.get("response_url") or "")
    tell = response_url_teller(services.http, response_url)
    if not asker.user or not asker.channel:
        jobs.later("tell", _say(tell, "Slack did not say who clicked or where; nothing was sent."))
        return
    if button.kind == "remix":
        trigger = str(payload.get("trigger_id") or "")
        view = remix_view(button, asker.channel, response_url)
        jobs.later("remix-modal", _open_modal(slack, trigger, view, response_url, services))
        return

    async def answer() -> None:
        await tell((await act(services, slack, jobs, asker, button, None, tell)).text)

    jobs.later(f"button-{button.kind}", _safely(answer(), tell))


def _remix_submitted(
    services: Services, slack: SlackChat, jobs: ChatJobs, payload: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The modal's style: an empty one keeps the modal open with the field's error; else the
    modal closes and the remix is acted on after the 200, its outcome told through the click's
    URL."""
    view = _view(payload)
    try:
        meta = json.loads(str(view.get("private_metadata") or ""))
    except ValueError:
        meta = None
    button = decode(str(meta.get("button") or "")) if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or button is None or button.kind != "remix":
        log.warning("chat remix without its button", app=APP)
        return None
    style = " ".join(str(_style(view) or "").split())
    if not style:
        return {"response_action": "errors", "errors": {STYLE_BLOCK: _NO_STYLE}}
    asker = _asker(payload, str(meta.get("channel") or ""))
    tell = response_url_teller(services.http, str(meta.get("response_url") or ""))
    if not asker.user or not asker.channel:
        jobs.later("tell", _say(tell, "Slack did not say who asked or where; nothing was sent."))
        return None

    async def answer() -> None:
        await tell((await act(services, slack, jobs, asker, button, style, tell)).text)

    jobs.later("button-remix", _safely(answer(), tell))
    return None


async def _open_modal(
    slack: SlackChat, trigger_id: str, view: dict[str, Any], response_url: str, services: Services
) -> None:
    """`views.open`; a failure is told to the clicker (Slack's error code, never the token)."""
    base = slack.api_base_url + "/" if slack.api_base_url else None
    client = web_client(slack.token.get_secret_value(), base, VIEWS_TIMEOUT_S)
    try:
        await client.views_open(trigger_id=trigger_id, view=view)
    except Exception as exc:  # a SlackApiError, a timeout: the clicker must hear of it
        code = getattr(getattr(exc, "response", None), "data", None)
        said = code.get("error") if isinstance(code, dict) else type(exc).__name__
        log.warning("chat remix modal not opened", app=APP, error=str(said)[:64])
        tell = response_url_teller(services.http, response_url)
        await tell(f"The remix form could not be opened ({str(said)[:64]}); try the button again.")


async def _safely(work: Coroutine[Any, Any, None], tell: Tell) -> None:
    """Run an answer in the background; a failure is logged and told, never raised."""
    try:
        await work
    except Exception:
        log.exception("chat button not answered", app=APP)
        await tell("The button did nothing: the relay failed.")


async def _say(tell: Tell, text: str) -> None:
    await tell(text)


def _asker(payload: Mapping[str, Any], channel: str) -> Asker:
    user = payload.get("user")
    user_id = str(user.get("id") or "") if isinstance(user, dict) else ""
    return Asker(app=APP, user=user_id, channel=channel)


def _channel(payload: Mapping[str, Any]) -> str:
    """The clicked message's channel: `channel.id`, else the container's `channel_id`."""
    for key, field in (("channel", "id"), ("container", "channel_id")):
        found = payload.get(key)
        if isinstance(found, dict) and found.get(field):
            return str(found[field])
    return ""


def _view(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    view = payload.get("view")
    return view if isinstance(view, dict) else {}


def _style(view: Mapping[str, Any]) -> str | None:
    """The style typed in the modal: `state.values[style][style].value`."""
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    block = values.get(STYLE_BLOCK) if isinstance(values, dict) else None
    field = block.get(STYLE_ACTION) if isinstance(block, dict) else None
    value = field.get("value") if isinstance(field, dict) else None
    return value if isinstance(value, str) else None
