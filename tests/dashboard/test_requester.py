"""A task asked for from chat shows who asked, and where, on the dashboard (its page and the
task list), read from the labels the chat apps set; other tasks show no such line."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from receiver.services import CHAT_CHANNEL_LABEL, CHAT_LABEL, CHAT_USER_LABEL
from tests.conftest import Relay
from tests.dashboard.test_dashboard import Admin

pytestmark = pytest.mark.slow

REQUESTER = re.compile(r'class="requester">([^<]*)<')


@pytest.fixture
def admin_of() -> Iterator[Callable[[Relay], Admin]]:
    """Factory: a signed-in `Admin` for a relay; its client is closed at the end."""
    made: list[Admin] = []

    def factory(relay: Relay) -> Admin:
        made.append(Admin(relay).login())
        return made[-1]

    yield factory
    for admin in made:
        admin.http.close()


def test_a_chat_task_shows_its_requester_and_a_plain_task_does_not(
    make_relay: Callable[..., Relay], admin_of: Callable[[Relay], Admin]
) -> None:
    """Labels `chat=slack`, `chat.user=U123`, `chat.channel=C456` read "Requested by U123 in
    Slack, channel C456" on the task page and in the list; a Discord one names Discord; a task
    submitted without chat labels has no requester line."""
    relay = make_relay()
    slack = relay.submit(
        "office blues from slack",
        labels={CHAT_LABEL: "slack", CHAT_USER_LABEL: "U123", CHAT_CHANNEL_LABEL: "C456"},
    )
    discord = relay.submit(
        "guild anthem from discord",
        labels={CHAT_LABEL: "discord", CHAT_USER_LABEL: "80351110224678912"},
    )
    plain = relay.submit("an api song, no chat")
    admin = admin_of(relay)

    def shown(path: str) -> list[str]:
        page = admin.http.get(path)
        assert 200 == page.status_code, page.text
        return REQUESTER.findall(page.text)

    assert ["Requested by U123 in Slack, channel C456"] == shown(f"/admin/tasks/{slack['id']}")
    assert ["Requested by 80351110224678912 in Discord"] == shown(f"/admin/tasks/{discord['id']}")
    assert [] == shown(f"/admin/tasks/{plain['id']}")
    listed = shown("/admin")
    assert sorted(listed) == sorted(
        ["Requested by U123 in Slack, channel C456", "Requested by 80351110224678912 in Discord"]
    )
