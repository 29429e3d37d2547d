"""What a button under a finished song does — Regenerate, Extend, Remix — for either chat app.

A click is planned from the store alone (the task's family and parameters, the clip's lyrics and
length), priced from the provider's price list, and given a task id fixed by what was clicked:
a double click, a Slack retry or a second relay process all land on the same id, and the
store's primary key lets only one of them through before anything is sent upstream. The
guard rails then decide exactly as for a typed command (`asking.start_submit`).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from handlers.chat_buttons import Button, clip_seconds
from handlers.slack_messages import escape
from receiver.chat.asking import Asker, Tell, start_submit
from receiver.chat.config import DiscordChat, SlackChat
from receiver.chat.jobs import ChatJobs
from receiver.costs import task_cost
from receiver.logging import get_logger
from receiver.rows import EventRow, TaskRow
from receiver.services import CHAT_LABEL, Services
from receiver.states import EventKind, Family
from receiver.submit import SubmitRequest

__all__ = ["MAX_STYLE", "Acted", "Planned", "act", "plan"]

log = get_logger("aimusic_relay.chat")

MAX_STYLE = 199
"""The longest remix style: sonic's `tags` must stay under 200 characters."""
_NAMESPACE = uuid.UUID("6f1d3c52-8a59-4b0e-9a43-1f3b6c2d7e10")
"""The uuid5 namespace of button task ids (any fixed value; changing it re-allows old clicks)."""
_NOT_RESENT = ("webhook_url", "webhook_secret")
"""Stored parameters a new task must not inherit: `submit` writes its own callback URL."""
_TITLE_BELOW = 80
_DESCRIPTION_CHARS = 400
_VERB = {"regenerate": "making “{}” again", "extend": "extending “{}”", "remix": "remixing “{}”"}


@dataclasses.dataclass(frozen=True, slots=True)
class Planned:
    """A click turned into a submission: what to send, what it costs, and its fixed task id."""

    request: SubmitRequest
    price: float
    ref: str
    title: str
    """The clicked song's title, for the answer."""


@dataclasses.dataclass(frozen=True, slots=True)
class Acted:
    """The answer to a click: the text for the clicker, and whether a submission started
    (Discord answers a started one with a deferred message the new song then fills in)."""

    text: str
    started: bool = False


def fixed_ref(app: str, button: Button, task_ref: str, style: str | None) -> str:
    """The task id a click makes: the same click (retried, doubled, in another process) gives
    the same id; a remix with another style (any case) is another request."""
    parts = [app, button.kind, task_ref, button.clip_id]
    if button.kind == "remix":
        parts.append(" ".join((style or "").split()).casefold())
    return uuid.uuid5(_NAMESPACE, "\n".join(parts)).hex


async def plan(services: Services, button: Button, style: str | None) -> Planned | str:
    """The submission `button` asks for (`style`: the remix's new style), or one line saying
    why it cannot be done. Reads the store only; nothing is sent anywhere."""
    task = await services.store.reads.get_task(button.task_ref)
    if task is None:
        return "That song's task is not known to this relay any more; nothing was submitted."
    clip = await _finished_clip(services, task, button.clip_id)
    if clip is None:
        return "That song is not among its task's finished songs; nothing was submitted."
    title = " ".join(str(clip.clip.get("title") or task.prompt or "untitled").split())
    params: dict[str, Any] | str
    if button.kind == "regenerate":
        params = {k: v for k, v in task.params.items() if k not in _NOT_RESENT}
    elif button.kind == "extend":
        params = _extend(task, clip)
    else:
        params = _remix(task, clip, title, style)
    if isinstance(params, str):
        return params
    params = {k: v for k, v in params.items() if v is not None}
    request = SubmitRequest(family=task.family, params=params)
    price = task_cost(task.family, str(params.get("task_type") or "create_music"))
    ref = fixed_ref(task.labels.get(CHAT_LABEL, ""), button, task.id, style)
    return Planned(request=request, price=price, ref=ref, title=title)


async def act(
    services: Services,
    app_settings: SlackChat | DiscordChat,
    jobs: ChatJobs,
    asker: Asker,
    button: Button,
    style: str | None,
    tell: Tell,
) -> Acted:
    """Answer a click: the submission started, why not, or that it was already asked for
    (nothing is submitted twice)."""
    planned = await plan(services, button, style)
    if isinstance(planned, str):
        log.info("chat button refused", app=asker.app, kind=button.kind, reason="plan")
        return Acted(planned)
    if not jobs.claim(planned.ref):
        return Acted(_already(button, planned, None))
    try:
        existing = await services.store.reads.get_task(planned.ref)
        if existing is not None:
            return Acted(_already(button, planned, existing.state))
        refusal = await start_submit(
            services,
            app_settings,
            jobs,
            asker,
            planned.request,
            planned.price,
            tell,
            ref=planned.ref,
        )
    except BaseException:
        jobs.release(planned.ref)
        raise
    if refusal is not None:
        jobs.release(planned.ref)
        return Acted(refusal)
    log.info("chat button", app=asker.app, kind=button.kind, task_ref=planned.ref)
    doing = _VERB[button.kind].format(escape(planned.title))
    said = f"On it: {doing} — {planned.price:g} credits; the song will appear in this channel."
    return Acted(said, started=True)


def _already(button: Button, planned: Planned, state: str | None) -> str:
    log.info("chat button already asked", kind=button.kind, task_ref=planned.ref)
    now = f" (it is {state})" if state else " (it is on its way)"
    return f"That was already asked for{now}; nothing new was submitted."


async def _finished_clip(services: Services, task: TaskRow, clip_id: str) -> EventRow | None:
    """The clip's latest `song.completed` event: its title, lyrics, style and length."""
    found = [
        event
        for event in await services.store.reads.events_for(task_refs=[task.id])
        if event.kind == EventKind.COMPLETED and event.clip_id == clip_id
    ]
    return found[-1] if found else None


def _extend(task: TaskRow, clip: EventRow) -> dict[str, Any] | str:
    """Sonic `extend_music` from the clip's end; the service writes the continuation's words
    from the original description (sonic keeps a title only in custom mode, so none is sent)."""
    if task.family != Family.SONIC:
        return (
            "Extend works on sonic songs only (the provider retired the producer's extend); "
            "nothing was submitted."
        )
    seconds = clip_seconds(clip.clip)
    if seconds is None:
        return "That song's length is not known, so it cannot be extended; nothing was submitted."
    tags = " ".join(str(clip.clip.get("tags") or "").split())
    description = str(
        task.params.get("gpt_description_prompt")
        or clip.clip.get("gpt_description_prompt")
        or f"a continuation of {clip.clip.get('title') or 'the song'}, {tags}".strip(", ")
    )
    return {
        "task_type": "extend_music",
        "custom_mode": False,
        "gpt_description_prompt": description[:_DESCRIPTION_CHARS],
        "tags": tags if 0 < len(tags) < MAX_STYLE + 1 else None,
        "continue_clip_id": clip.clip_id,
        "continue_at": seconds,
        "mv": task.params.get("mv") or clip.clip.get("mv"),
        "make_instrumental": task.params.get("make_instrumental"),
    }


def _remix(task: TaskRow, clip: EventRow, title: str, style: str | None) -> dict[str, Any] | str:
    """The clip's own lyrics sung in `style`: sonic custom mode (lyrics in `prompt`, style in
    `tags`), or producer `lyrics` with the style as `sound`."""
    lyrics = str(clip.clip.get("lyrics") or "").strip()
    if not lyrics:
        return "That song has no lyrics to remix; nothing was submitted."
    wanted = " ".join((style or "").split())
    if not wanted:
        return "Say which style to remix it in; nothing was submitted."
    if len(wanted) > MAX_STYLE:
        return f"The style is too long: at most {MAX_STYLE} characters; nothing was submitted."
    name = title[: _TITLE_BELOW - 1]
    mv = task.params.get("mv")
    if task.family == Family.SONIC:
        base = {"custom_mode": True, "prompt": lyrics, "tags": wanted}
        return {"task_type": "create_music", **base, "title": name, "mv": mv}
    return {"task_type": "create_music", "lyrics": lyrics, "sound": wanted, "title": name, "mv": mv}
