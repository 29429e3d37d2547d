"""What the guard rails need from the relay: an app's limits and what its people spent.

Kept apart from `receiver.chat.guard` (pure) because it reads the store: the spent records
are the chat tasks themselves, so nothing is stored twice and a restart forgets nothing.
"""

from __future__ import annotations

from receiver import costs
from receiver.chat.config import DiscordChat, SlackChat
from receiver.chat.guard import Limits, Spent
from receiver.rows import TaskRow
from receiver.services import CHAT_CHANNEL_LABEL, CHAT_LABEL, CHAT_USER_LABEL
from receiver.states import TaskState
from receiver.store import Store

__all__ = ["limits_of", "read_spent"]

LOOKBACK_S = 86400.0
"""A day back covers both windows `guard.check` reads: today (UTC) and the last hour."""
_PAGE = 200


def limits_of(app: SlackChat | DiscordChat) -> Limits:
    """The guard rails `[chat.*]` sets, as `guard.check` takes them."""
    return Limits(
        user_daily_credits=app.user_daily_credits,
        channel_daily_credits=app.channel_daily_credits,
        allowed_channels=frozenset(app.allowed_channels),
        allowed_users=frozenset(app.allowed_users),
        allowed_roles=frozenset(getattr(app, "allowed_roles", ())),
        user_songs_per_hour=app.user_songs_per_hour,
    )


async def read_spent(store: Store, app: str, now: float) -> dict[str, Spent]:
    """Each priced task `app` asked for in the last day, by task id (newest first)."""
    since = now - LOOKBACK_S
    found: dict[str, Spent] = {}
    offset = 0
    while True:
        page = await store.reads.list_tasks(_PAGE, offset, labels={CHAT_LABEL: app})
        for task in page:
            if task.created_at < since:
                return found
            if _charged(task):
                found[task.id] = Spent(
                    user=task.labels.get(CHAT_USER_LABEL, ""),
                    channel=task.labels.get(CHAT_CHANNEL_LABEL, ""),
                    credits=costs.task_cost(task.family, task.params.get("task_type")),
                    at=task.created_at,
                )
        if len(page) < _PAGE:
            return found
        offset += _PAGE


def _charged(task: TaskRow) -> bool:
    """False only for a create the provider refused: it never had an upstream id, and a
    refusal costs nothing. A later failure counts, as the budgets charge before refunds."""
    return not (task.state == TaskState.FAILED and task.upstream_id is None)
