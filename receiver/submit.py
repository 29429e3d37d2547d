"""Submitting a task: one function behind `POST /api/tasks`, `aimusic-relay submit`, the demo.

The task is stored *before* the create call, so a crash mid-call leaves a record; a create whose
outcome is unknown (timeout, 5xx) is marked `unknown` and never sent again automatically,
because a second create would cost credits for a song nobody asked for twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from receiver.errors import OutcomeUnknown, RateLimited, RelayError, UpstreamError
from receiver.logging import get_logger
from receiver.models import TASK_LEVEL_CLIP, CreateAnswer
from receiver.rows import TaskRow
from receiver.services import Services
from receiver.states import EventKind, Family, Source, TaskState
from receiver.store import Inbound, NewTask

__all__ = ["SubmitRequest", "sonic_params", "submit"]

log = get_logger("aimusic_relay.submit")

SONIC_DEFAULT_MODEL = "sonic-v4-5"
CREATE_ATTEMPTS_ON_429 = 3
MAX_429_WAIT_S = 60.0
_PROMPT_KEYS = ("sound", "gpt_description_prompt", "lyrics", "prompt", "tags")


class SubmitRequest(BaseModel):
    """`POST /api/tasks` body."""

    model_config = ConfigDict(extra="forbid")

    family: Family = Family.PRODUCER
    params: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    handlers: list[str] | None = None


class SubmitRefused(RelayError):
    """The request cannot be sent as asked (an unknown handler, a title sonic would drop);
    nothing was created or charged."""


def sonic_params(params: dict[str, Any]) -> dict[str, Any]:
    """Accept the producer-style `sound`/`lyrics` for sonic too: lyrics become `prompt` in
    custom mode (the style goes to `tags`); a style alone becomes `gpt_description_prompt`."""
    params = dict(params)
    sound, lyrics = params.pop("sound", None), params.pop("lyrics", None)
    if lyrics and not params.get("prompt"):
        params["prompt"] = lyrics
    if sound:
        key = "tags" if params.get("prompt") else "gpt_description_prompt"
        params.setdefault(key, sound)
    params.setdefault("custom_mode", bool(params.get("prompt")))
    params.setdefault("mv", SONIC_DEFAULT_MODEL)
    return params


def _refuse_dropped_title(params: dict[str, Any]) -> None:
    """Sonic keeps a `title` only in custom mode (your lyrics in `prompt`); in description mode
    it writes the words and names the song itself, dropping ours without a word. Refused
    before anything is sent, so no credits go on a song under a title nobody asked for and the
    `task.submitted` event never names a title the songs will not have."""
    if not params.get("title") or params.get("custom_mode"):
        return
    if params.get("task_type") == "concat_music":  # joins existing clips; the title is kept
        return
    raise SubmitRefused(
        "title: sonic keeps a title only with your own lyrics (custom mode); without them it "
        "names the song itself. Add lyrics (--lyrics FILE, or params.lyrics), or drop the title"
    )


async def _create(
    services: Services, family: str, params: dict[str, Any], bound: Any
) -> CreateAnswer:
    """Create upstream; a 429 is retried after its Retry-After — safe only because a 429
    means nothing was created — a bounded number of times."""
    for attempt in range(1, CREATE_ATTEMPTS_ON_429 + 1):
        try:
            return await services.upstream.create(family, params)
        except RateLimited as exc:
            wait_s = exc.retry_after
            if attempt == CREATE_ATTEMPTS_ON_429 or wait_s is None or wait_s > MAX_429_WAIT_S:
                raise
            bound.info("create rate-limited; retrying after Retry-After", retry_after_s=wait_s)
            await asyncio.sleep(wait_s)
    raise AssertionError("unreachable")  # pragma: no cover


async def _announce(
    services: Services, ref: str, task_id: str, request: SubmitRequest, params: dict[str, Any]
) -> None:
    """Record a `task.submitted` event, so handlers that want it (Slack's "generating…"
    message) run through the same outbox as every other event."""
    clip = {"title": params["title"]} if params.get("title") else {}
    await services.store.record_inbound(
        Inbound(
            source=Source.RELAY,
            body=b"",
            platform=request.family,
            clips=[(EventKind.SUBMITTED, TASK_LEVEL_CLIP, clip)],
            task_id=task_id,
            task_ref=ref,
        ),
        services.handlers.route,
    )


async def submit(services: Services, request: SubmitRequest, *, ref: str | None = None) -> TaskRow:
    """Create the task upstream and return the stored task (state `submitted` or `unknown`).

    `ref` is the relay's id for the task, when the caller must know it before the task is
    stored (a chat answer counts the spend of a submission still in flight); else a new one."""
    if request.handlers is not None:
        unknown = [name for name in request.handlers if services.handlers.get(name) is None]
        if unknown:
            known = ", ".join(h.name for h in services.handlers)
            raise SubmitRefused(f"unknown handler(s) {', '.join(unknown)}; configured: {known}")
    ref = ref or uuid.uuid4().hex
    params = dict(request.params)
    params.setdefault("task_type", "create_music")
    if request.family == Family.SONIC:
        params = sonic_params(params)
        _refuse_dropped_title(params)
    stored_params = dict(params)
    callbacks = services.settings.callbacks_enabled
    if callbacks:
        token = services.tokens.dumps(ref)
        params["webhook_url"] = f"{services.settings.public_url}/webhooks/aimusic/{token}"
        params["webhook_secret"] = services.tokens.task_secrets(ref)[0]
        stored_params["webhook_url"] = params["webhook_url"]
    prompt = next((params[k] for k in _PROMPT_KEYS if params.get(k)), None)
    now, settings = time.time(), services.settings
    first_poll = (
        settings.relay_poll_grace_s if callbacks else min(settings.relay_poll_grace_s, 15.0)
    )
    await services.store.create_task(
        NewTask(
            id=ref,
            family=request.family,
            platform=request.family,
            prompt=str(prompt) if prompt else None,
            params=stored_params,
            labels=request.labels,
            handlers=request.handlers,
            deadline_at=now + settings.relay_task_deadline_s,
            next_poll_at=now + first_poll,
        )
    )
    bound = log.bind(task_ref=ref, family=request.family)
    try:
        answer = await _create(services, request.family, params, bound)
    except OutcomeUnknown as exc:
        await services.store.task_state(ref, TaskState.UNKNOWN, exc.message)
        bound.warning("create outcome unknown; not re-sent", error=exc.message)
    except UpstreamError as exc:
        await services.store.task_state(ref, TaskState.FAILED, exc.message)
        bound.warning("create refused", status=exc.status, error=exc.message)
        raise
    else:
        await services.store.task_submitted(ref, answer.task_id)
        bound.info("task submitted", task_id=answer.task_id)
        await _announce(services, ref, answer.task_id, request, params)
    task = await services.store.reads.get_task(ref)
    if task is None:  # pragma: no cover - we just wrote it
        raise RelayError(f"task {ref} vanished after submit")
    return task
