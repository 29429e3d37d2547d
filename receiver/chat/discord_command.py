"""The Discord app's answer to a verified interaction: PONG, help, credits, status, lyrics, a
song, or a song's button (`discord_buttons`).

`/song` has one string option, `text`, read by the same parser as Slack's command text. A
song is checked against the guard rails (a refusal costs nothing: no upstream call, an
ephemeral message saying why), then answered at once with a deferred response (Discord's 3 s
limit) while the submission runs in the background. The task carries the interaction's token
(sealed) and time as labels, so the implicit `chat-discord` handler edits the original
response into "generating…" and then the song, as an ordinary outbox delivery. A create the
provider refuses is told by editing the original response with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from receiver.chat.asking import credits_text, guard_free, start_submit
from receiver.chat.commands import (
    Credits,
    Help,
    Lyrics,
    Refused,
    Status,
    cost,
    parse,
    usage,
)
from receiver.chat.config import DiscordChat
from receiver.chat.discord_buttons import clicked, remix_submitted
from receiver.chat.discord_reply import (
    APP,
    COMMAND,
    COMPONENT,
    DEFERRED,
    EPHEMERAL,
    MODAL_SUBMIT,
    PING,
    PONG,
    answered_here,
    asker_of,
    ephemeral,
    interaction_teller,
)
from receiver.chat.jobs import ChatJobs
from receiver.chat.lyrics import start_lyrics
from receiver.chat.status import status_text
from receiver.logging import get_logger
from receiver.services import Services
from receiver.submit import SubmitRequest

__all__ = ["COMMAND_NAME", "OPTION", "answer"]

log = get_logger("aimusic_relay.chat")

COMMAND_NAME, OPTION = "song", "text"
"""The registered command and its one option (`receiver.chat.manifest`)."""


async def answer(
    services: Services, discord: DiscordChat, jobs: ChatJobs, interaction: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON response to a verified interaction (Discord wants it within 3 s)."""
    kind = interaction.get("type")
    if kind == PING:
        return {"type": PONG}
    if kind in (COMPONENT, MODAL_SUBMIT):
        asker = asker_of(interaction)
        if asker is None:
            return ephemeral("Discord did not say who clicked or where; nothing was done.")
        act = clicked if kind == COMPONENT else remix_submitted
        return await act(services, discord, jobs, interaction, asker)
    if kind != COMMAND:
        log.info("chat interaction not handled", app=APP, interaction_type=str(kind)[:20])
        return ephemeral("This relay does not handle that kind of interaction.")
    return await _command(services, discord, jobs, interaction)


async def _command(
    services: Services, discord: DiscordChat, jobs: ChatJobs, interaction: Mapping[str, Any]
) -> dict[str, Any]:
    """`/song text:<…>`, read as Slack's `/song <…>` is."""
    data = interaction.get("data")
    if not isinstance(data, Mapping) or data.get("name") != COMMAND_NAME:
        return ephemeral(f"This relay answers only `/{COMMAND_NAME}`.")
    parsed = parse(_text(data), "/" + COMMAND_NAME)
    log.info("chat command", app=APP, answer=type(parsed).__name__.lower())
    if isinstance(parsed, Help):
        return ephemeral(usage())
    if isinstance(parsed, Refused):
        return ephemeral(parsed.message)
    asker = asker_of(interaction)
    if asker is None:
        return ephemeral("Discord did not say who asked or in which channel; nothing was done.")
    if isinstance(parsed, Credits):
        return ephemeral(guard_free(discord, asker) or await credits_text(services))
    if isinstance(parsed, Status):
        return ephemeral(guard_free(discord, asker) or await status_text(services, asker))
    tell = interaction_teller(services.http, discord, interaction)
    if isinstance(parsed, Lyrics):
        refusal = await start_lyrics(services, discord, jobs, asker, parsed.idea, tell)
        if refusal is not None:
            return ephemeral(refusal)
        return {"type": DEFERRED, "data": {"flags": EPHEMERAL}}  # the lyrics come to them only
    replying = answered_here(services, asker, interaction)
    if replying is None:
        return ephemeral("Discord sent no interaction token; nothing was submitted.")
    request = SubmitRequest(family=parsed.family, params={"sound": parsed.prompt})
    refusal = await start_submit(services, discord, jobs, replying, request, cost(parsed), tell)
    if refusal is not None:
        return ephemeral(refusal)
    return {"type": DEFERRED}


def _text(data: Mapping[str, Any]) -> str:
    """The value of the `text` option ('' when it is left out: that asks for help)."""
    options = data.get("options")
    for option in options if isinstance(options, list) else []:
        if isinstance(option, Mapping) and option.get("name") == OPTION:
            value = option.get("value")
            return value.strip() if isinstance(value, str) else ""
    return ""
