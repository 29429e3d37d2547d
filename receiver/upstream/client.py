"""The AI Music API client: producer, sonic, lyrics, credits; every failure as a typed error.

Retries happen only where they are safe. A create costs credits and the provider offers no
idempotency key, so a create is sent at most once: if we cannot tell whether it arrived (a
timeout, a dropped connection, a 5xx) we raise `OutcomeUnknown` and the caller reconciles by
polling instead of sending it again. A `RateLimited` (429) from a create means nothing was
created: it carries `retry_after` (seconds, or None when the provider gave no usable
`Retry-After`) and may be sent again after that wait. Reads (poll, credits) are retried briefly.
Nuro was retired upstream: its calls raise `TaskGone` without sending anything.

The API key goes only into the `Authorization` header; it is never part of a message or repr,
and is scrubbed from provider messages that echo it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from receiver import costs
from receiver.errors import (
    OutcomeUnknown,
    TaskGone,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from receiver.models import (
    CreateAnswer,
    Credits,
    LyricsAnswer,
    LyricsResult,
    LyricsTaskAnswer,
    TaskAnswer,
)
from receiver.states import Family
from receiver.upstream.errors import Call, unknown
from receiver.upstream.task_types import is_retired_task_type
from receiver.upstream.transport import Transport, Unsure

__all__ = [
    "NURO_RETIRED",
    "UpstreamClient",
]

NURO_RETIRED = (
    "nuro was retired by the provider (410 Gone): make vocal songs with sonic (`--family sonic`) "
    "and background music with producer (`--family producer`)"
)
"""Why every nuro call fails; the client raises it as `TaskGone` without sending anything."""


class UpstreamClient(Transport):
    """An async client for one AI Music API base URL and key; use it as `async with`.

    Pass `http` to share a connection pool (it is then not closed here). `retry_delays` are
    the waits before each retry of a read (poll, credits).
    """

    async def create(self, family: str, params: Mapping[str, Any]) -> CreateAnswer:
        """Create a task in `family` ("producer" or "sonic"; "nuro" raises `TaskGone`).

        Sent once. `OutcomeUnknown`: it may exist, do not re-send. `RateLimited`: nothing was
        created; wait `retry_after` seconds (None: back off) and it is safe to send again.
        """
        if family == Family.PRODUCER:
            return await self.create_producer(params)
        if family == Family.SONIC:
            return await self.create_sonic(params)
        if family == Family.NURO:
            return await self.nuro_create(params)
        raise _unknown_family(family)

    async def task(self, family: str, task_id: str) -> TaskAnswer:
        """Poll a task of `family` ("producer" or "sonic"; "nuro" raises `TaskGone`)."""
        if family == Family.PRODUCER:
            return await self.producer_task(task_id)
        if family == Family.SONIC:
            return await self.sonic_task(task_id)
        if family == Family.NURO:
            return await self.nuro_task(task_id)
        raise _unknown_family(family)

    async def create_producer(self, params: Mapping[str, Any]) -> CreateAnswer:
        """Create a producer task (10 credits); sent once, never retried (module docstring)."""
        task_type = params.get("task_type")
        if isinstance(task_type, str) and is_retired_task_type(task_type):
            raise TaskGone(
                f"producer task type {task_type!r} was retired by the AI Music API "
                "(it answers 410 Gone): send a fresh create_music task instead",
                status=410,
            )
        call = Call("producer create", creates=True, cost=costs.PRODUCER_CREATE)
        return await self._create("/api/v1/producer/create", params, call)

    async def producer_task(self, task_id: str) -> TaskAnswer:
        """Poll a producer task (free, safe to repeat)."""
        path = f"/api/v1/producer/task/{quote(task_id, safe='')}"
        return await self._read(path, TaskAnswer, Call(f"poll of task {task_id}", task_id=task_id))

    async def create_sonic(self, params: Mapping[str, Any]) -> CreateAnswer:
        """Create a sonic task (2 songs; 15 credits, concat 2); sent once, never retried."""
        sonic_type = params.get("task_type")
        cost = costs.SONIC_CONCAT if sonic_type == "concat_music" else costs.SONIC_CREATE
        call = Call("sonic create", creates=True, cost=cost)
        return await self._create("/api/v1/sonic/create", params, call)

    async def sonic_task(self, task_id: str) -> TaskAnswer:
        """Poll a sonic task: both clips, each with its own `state` (no overall status)."""
        path = f"/api/v1/sonic/task/{quote(task_id, safe='')}"
        call = Call(f"poll of sonic task {task_id}", task_id=task_id)
        return await self._read(path, TaskAnswer, call)

    async def nuro_create(self, params: Mapping[str, Any]) -> CreateAnswer:
        """Always raises `TaskGone`: nuro was retired; nothing is sent."""
        raise TaskGone(f"{NURO_RETIRED}; nothing was sent", status=410)

    async def nuro_task(self, task_id: str) -> TaskAnswer:
        """Always raises `TaskGone`: nuro tasks can no longer be polled; nothing is sent."""
        raise TaskGone(
            f"{NURO_RETIRED}; nuro task {task_id} can no longer be polled (its callbacks are "
            "still accepted); nothing was sent",
            status=410,
        )

    async def lyrics_create(self, params: Mapping[str, Any]) -> CreateAnswer:
        """Start a producer lyrics task from `{"prompt": ...}` (1 credit); sent once.

        The docs do not show this body or its result: `{"prompt"}` in and a task id out,
        polled with `lyrics_task`, is the sandbox's choice where the docs are silent.
        """
        call = Call("lyrics create", creates=True, cost=costs.LYRICS)
        return await self._create("/api/v1/producer/lyrics-create", params, call)

    async def lyrics_task(self, task_id: str) -> LyricsTaskAnswer:
        """Poll a lyrics task on the producer task endpoint; once SUCCESS `data` holds lyrics."""
        path = f"/api/v1/producer/task/{quote(task_id, safe='')}"
        call = Call(f"poll of lyrics task {task_id}", task_id=task_id)
        return await self._read(path, LyricsTaskAnswer, call)

    async def sonic_lyrics(self, description: str) -> LyricsAnswer:
        """Write two sets of lyrics for `description` at once (`POST /api/v1/sonic/lyrics`).

        Sent once: a timeout or 5xx raises `UpstreamUnavailable` saying it was not repeated.
        """
        call = Call("sonic lyrics request", creates=True)
        try:
            body = {"description": description}
            payload = await self._post_once("/api/v1/sonic/lyrics", body, call)
        except Unsure as exc:
            raise UpstreamUnavailable(
                f"the sonic lyrics request failed ({exc.reason}); it was sent once and not "
                "repeated, since it may have cost credits — run it again to retry",
                status=exc.status,
            ) from exc
        return self._model(payload, LyricsAnswer, call, 200)

    async def write_lyrics(
        self,
        prompt: str,
        *,
        family: str = Family.PRODUCER,
        poll_s: float = 2.0,
        timeout_s: float = 120.0,
    ) -> list[LyricsResult]:
        """Lyrics for `prompt`: sonic answers at once (2 results); producer is polled until done.

        Raises `UpstreamError` if the producer task fails or is not done within `timeout_s`.
        """
        if family == Family.SONIC:
            return (await self.sonic_lyrics(prompt)).data
        if family == Family.NURO:
            raise TaskGone(f"{NURO_RETIRED}; nothing was sent", status=410)
        if family != Family.PRODUCER:
            raise _unknown_family(family)
        task_id = (await self.lyrics_create({"prompt": prompt})).task_id
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            answer = await self.lyrics_task(task_id)
            status = (answer.status or "").upper()
            if status == "SUCCESS":
                return answer.data
            if status == "FAILED":
                reason = answer.message or "no reason given"
                raise UpstreamError(f"the lyrics task {task_id} failed: {reason}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise UpstreamError(
                    f"no lyrics after {timeout_s:g} s: task {task_id} is still "
                    f"{status or 'unfinished'}; it may still finish upstream"
                )
            await asyncio.sleep(min(poll_s, remaining))

    async def credits(self) -> Credits:
        """The account's credit balance."""
        return await self._read("/api/v1/get-credits", Credits, Call("credits query"))

    async def _create(self, path: str, params: Mapping[str, Any], call: Call) -> CreateAnswer:
        """POST once; anything that leaves the outcome open is `OutcomeUnknown`."""
        try:
            payload = await self._post_once(path, dict(params), call)
        except Unsure as exc:
            raise OutcomeUnknown(unknown(call.what, exc.reason), status=exc.status) from exc
        try:
            return CreateAnswer.model_validate(payload)
        except ValidationError:
            # It said yes but we cannot read the task id: the task may well exist.
            raise OutcomeUnknown(
                unknown(call.what, "it answered 2xx without a task_id"), status=200
            ) from None


def _unknown_family(family: str) -> UpstreamRejected:
    return UpstreamRejected(
        f"unknown API family {family!r}: use producer or sonic (nuro was retired); nothing was sent"
    )
