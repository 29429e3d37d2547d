"""`/song status`: the songs the asker still waits for, one line each.

Read from the store (the chat tasks carry the app and the user as labels), so it shows songs
asked for before a restart too, and costs nothing upstream. Only the asker's own songs are
listed: a channel's status would tell everyone what everyone else asked for.
"""

from __future__ import annotations

import time

from handlers.slack_messages import escape
from receiver.chat.asking import Asker
from receiver.rows import TaskRow
from receiver.services import CHAT_LABEL, CHAT_USER_LABEL, Services
from receiver.states import SETTLED_TASK_STATES, TASK_STATES, Family, TaskState

__all__ = ["IN_PROGRESS", "NOTHING", "SHOWN", "status_text"]

SHOWN = 10
"""The most songs one answer lists (the newest), so it stays a chat message."""
NOTHING = "None of your songs is being made right now."
IN_PROGRESS: tuple[TaskState, ...] = tuple(s for s in TASK_STATES if s not in SETTLED_TASK_STATES)
"""States of a song still being made. `unknown` (the create's outcome could not be known) is
left out with the final ones: nothing more happens to it by itself, and listing it would keep
it in every later answer."""
_PROMPT_CHARS = 80
_SAID: dict[TaskState, str] = {
    TaskState.SUBMITTING: "being sent",
    TaskState.SUBMITTED: "queued",
    TaskState.RUNNING: "running",
    TaskState.STREAMING: "almost done",
}


async def status_text(services: Services, asker: Asker, now: float | None = None) -> str:
    """The asker's unfinished songs from this app, newest first (at most `SHOWN`), or
    `NOTHING`. One store read per in-progress state, each at most `SHOWN` rows."""
    labels = {CHAT_LABEL: asker.app, CHAT_USER_LABEL: asker.user}
    found: list[TaskRow] = []
    for state in IN_PROGRESS:
        found += await services.store.reads.list_tasks(SHOWN, 0, state=state, labels=labels)
    if not found:
        return NOTHING
    found.sort(key=lambda task: (-task.created_at, task.id))
    moment = time.time() if now is None else now
    lines = [_line(task, moment) for task in found[:SHOWN]]
    if len(found) > SHOWN:
        lines.append(f"(the newest {SHOWN}; more are being made)")
    return "\n".join(lines)


def _line(task: TaskRow, now: float) -> str:
    """`• “prompt” — running, asked 3 min ago` (sonic says it makes two songs)."""
    prompt = " ".join((task.prompt or "").split()) or "(no prompt)"
    if len(prompt) > _PROMPT_CHARS:
        prompt = prompt[: _PROMPT_CHARS - 1] + "…"
    two = " (2 songs)" if task.family == Family.SONIC else ""
    said = _SAID.get(task.state, task.state.value)
    return f"• “{escape(prompt)}”{two} — {said}, asked {_ago(now - task.created_at)}"


def _ago(seconds: float) -> str:
    """`just now`, `3 min ago`, `2 h 5 min ago`, `3 d ago`: how a person says it."""
    if seconds < 60:
        return "just now"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min ago"
    hours, rest = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {rest} min ago" if rest else f"{hours} h ago"
    return f"{hours // 24} d ago"
