"""The Discord app's answer to a song's button (a message component) or the Remix modal.

Regenerate and Extend are acted on at once by `actions.act` (store reads and the guard rails:
well inside Discord's 3 s). A started submission is answered with a new deferred message
whose interaction token the new task carries, so the `chat-discord` handler turns that
message into "generating…" and then the new song, as for a typed `/song`; a refusal, or a
click that was already acted on (a double click: the fixed task id submits once), is an
ephemeral message to the clicker only. Remix first answers with a modal asking for the style;
its submission (MODAL_SUBMIT, whose `custom_id` is the button's) is acted on the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers.chat_buttons import Button, decode, encode
from receiver.chat.actions import MAX_STYLE, act
from receiver.chat.asking import Asker
from receiver.chat.config import DiscordChat
from receiver.chat.discord_reply import (
    APP,
    DEFERRED,
    MODAL,
    answered_here,
    ephemeral,
    interaction_teller,
)
from receiver.chat.jobs import ChatJobs
from receiver.logging import get_logger
from receiver.services import Services

__all__ = ["STYLE_ID", "clicked", "remix_modal", "remix_submitted"]

log = get_logger("aimusic_relay.chat")

STYLE_ID = "style"
"""The `custom_id` of the modal's one text input."""
_TEXT_INPUT, _SHORT, _ACTION_ROW = 4, 1, 1
_NOT_OURS = "That button is not one this relay made; nothing was done."
_NO_STYLE = "Say which style to remix it in, such as “bossa nova, soft vocals”; nothing was done."


async def clicked(
    services: Services,
    discord: DiscordChat,
    jobs: ChatJobs,
    interaction: Mapping[str, Any],
    asker: Asker,
) -> dict[str, Any]:
    """A button: Remix opens its modal; Regenerate and Extend are acted on."""
    button = _button(interaction)
    if button is None:
        log.info("chat interaction ignored", app=APP, kind="component")
        return ephemeral(_NOT_OURS)
    if button.kind == "remix":
        return remix_modal(button)
    return await _act(services, discord, jobs, interaction, asker, button, None)


async def remix_submitted(
    services: Services,
    discord: DiscordChat,
    jobs: ChatJobs,
    interaction: Mapping[str, Any],
    asker: Asker,
) -> dict[str, Any]:
    """The Remix modal's style, acted on; an empty style is told, nothing is submitted."""
    button = _button(interaction)
    if button is None or button.kind != "remix":
        log.warning("chat remix without its button", app=APP)
        return ephemeral(_NOT_OURS)
    style = " ".join(_style(interaction.get("data")).split())
    if not style:
        return ephemeral(_NO_STYLE)
    return await _act(services, discord, jobs, interaction, asker, button, style)


def remix_modal(button: Button) -> dict[str, Any]:
    """The modal asking for the remix's style; its `custom_id` is the button's, so its
    submission says which song to remix with nothing stored in between."""
    field = {
        "type": _TEXT_INPUT,
        "custom_id": STYLE_ID,
        "label": "New style (the same lyrics)",
        "style": _SHORT,
        "min_length": 1,
        "max_length": MAX_STYLE,
        "required": True,
        "placeholder": "bossa nova, soft vocals",
    }
    return {
        "type": MODAL,
        "data": {
            "custom_id": encode(button),
            "title": "Remix the song",
            "components": [{"type": _ACTION_ROW, "components": [field]}],
        },
    }


async def _act(
    services: Services,
    discord: DiscordChat,
    jobs: ChatJobs,
    interaction: Mapping[str, Any],
    asker: Asker,
    button: Button,
    style: str | None,
) -> dict[str, Any]:
    """`actions.act` for the clicker, answered through this interaction."""
    replying = answered_here(services, asker, interaction)
    if replying is None:
        return ephemeral("Discord sent no interaction token; nothing was submitted.")
    tell = interaction_teller(services.http, discord, interaction)
    acted = await act(services, discord, jobs, replying, button, style, tell)
    return {"type": DEFERRED} if acted.started else ephemeral(acted.text)


def _button(interaction: Mapping[str, Any]) -> Button | None:
    data = interaction.get("data")
    custom_id = data.get("custom_id") if isinstance(data, Mapping) else None
    return decode(custom_id) if isinstance(custom_id, str) else None


def _style(data: Any) -> str:
    """The modal's style: the value of the text input `style` in its action rows."""
    rows = data.get("components") if isinstance(data, Mapping) else None
    for row in rows if isinstance(rows, list) else []:
        inputs = row.get("components") if isinstance(row, Mapping) else None
        for field in inputs if isinstance(inputs, list) else []:
            if isinstance(field, Mapping) and field.get("custom_id") == STYLE_ID:
                value = field.get("value")
                return value if isinstance(value, str) else ""
    return ""
