"""The song buttons without a chat platform: their wire form, which songs get which, what each
click plans from a real store (SQLite), the click's fixed task id, and the Slack rendering."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from handlers.chat_buttons import MAX_CHARS, Button, buttons_for, clip_seconds, decode, encode
from handlers.slack_messages import render
from receiver.chat.actions import MAX_STYLE, Planned, act, fixed_ref, plan
from receiver.chat.asking import Asker
from receiver.chat.config import SlackChat
from receiver.chat.guard import Spent
from receiver.chat.jobs import ChatJobs
from receiver.config import Settings
from receiver.models import Event
from receiver.services import Services, build_services
from receiver.states import EventKind, Source
from receiver.store import Inbound, NewTask

REF = "0123456789abcdef0123456789abcdef"
CLIP = "5b0d7c1e-6a3f-4d2b-9e8f-1a2b3c4d5e6f"
LYRICS = "[Verse]\nRain on the window\nCoffee gone cold"


@pytest.mark.parametrize("kind", ["regenerate", "extend", "remix"])
def test_a_button_survives_its_wire_form_within_100_characters(kind: Any) -> None:
    button = Button(kind, REF, CLIP)
    text = encode(button)
    assert len(text) <= MAX_CHARS
    assert button == decode(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "regenerate",  # the bare action id another app (or an old test) might send
        f"song:regenerate:{REF}",
        f"song:delete:{REF}:{CLIP}",
        f"other:regenerate:{REF}:{CLIP}",
        f"song:regenerate:{REF}:{CLIP}:extra",
        f"song:regenerate::{CLIP}",
        f"song:regenerate:{REF}:clip id with spaces",
        f"song:regenerate:{REF}:{'c' * 80}",
    ],
)
def test_anything_else_is_not_a_button(text: str) -> None:
    assert decode(text) is None


@pytest.mark.parametrize(
    ("task_ref", "clip_id", "error"),
    [
        ("a:b", CLIP, "task_ref 'a:b'"),
        (REF, "", "clip_id ''"),
        (REF, "x" * 64, "longer than 100"),
    ],
)
def test_an_id_that_cannot_go_on_the_wire_is_refused_by_name(
    task_ref: str, clip_id: str, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        encode(Button("regenerate", task_ref, clip_id))


@pytest.mark.parametrize(
    ("platform", "task_ref", "clip", "kinds"),
    [
        ("producer", REF, {"lyrics": LYRICS}, ["regenerate", "remix"]),
        ("producer", REF, {"lyrics": LYRICS, "duration": 120}, ["regenerate", "remix"]),
        ("sonic", REF, {"lyrics": LYRICS, "duration": 104.88}, ["regenerate", "extend", "remix"]),
        ("suno", REF, {"lyrics": LYRICS, "duration": "104.88"}, ["regenerate", "extend", "remix"]),
        ("sonic", REF, {"lyrics": LYRICS}, ["regenerate", "remix"]),  # length unknown
        ("sonic", REF, {"duration": 30, "lyrics": "  "}, ["regenerate", "extend"]),  # instrumental
        ("sonic", None, {"lyrics": LYRICS, "duration": 30}, []),  # not the relay's task
    ],
)
def test_which_buttons_a_finished_clip_gets(
    platform: str, task_ref: str | None, clip: dict[str, Any], kinds: list[str]
) -> None:
    assert kinds == [b.kind for b in buttons_for(platform, task_ref, CLIP, clip)]


def test_a_clip_whose_ids_do_not_fit_gets_no_buttons() -> None:
    assert [] == buttons_for("sonic", REF, "c" * 64, {"lyrics": LYRICS, "duration": 30})


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [(104.88, 104.88), ("104.88", 104.88), (0, None), ("soon", None), (True, None), (None, None)],
)
def test_a_clips_length_is_read_from_a_number_or_a_string(duration: Any, seconds: Any) -> None:
    assert seconds == clip_seconds({"duration": duration})


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    """The relay's own services on a fresh SQLite file; no handlers, no upstream calls."""
    settings = Settings(
        aimusic_api_key="k",  # type: ignore[arg-type]
        aimusic_base_url="http://127.0.0.1:9",
        relay_secret_key="s",  # type: ignore[arg-type]
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        relay_config=None,
    )
    built = build_services(settings)
    await built.store.open()
    yield built
    await built.aclose()


async def finished(
    services: Services, ref: str, family: str, params: dict[str, Any], clip: dict[str, Any]
) -> None:
    """Store a chat task as `submit` would, and its finished clip `CLIP` as a poll would."""
    await services.store.create_task(
        NewTask(
            id=ref,
            family=family,
            platform=family,
            prompt="p",
            params=params,
            labels={"chat": "slack"},
            handlers=None,
            deadline_at=time.time() + 600,
        )
    )
    await services.store.task_submitted(ref, f"up-{ref}")
    await services.store.record_inbound(
        Inbound(
            source=Source.POLL,
            body=b"{}",
            platform=family,
            clips=[(EventKind.COMPLETED, CLIP, clip)],
            task_id=f"up-{ref}",
            task_ref=ref,
        ),
        services.handlers.route,
    )


SONIC_PARAMS = {
    "task_type": "create_music",
    "gpt_description_prompt": "rainy office blues",
    "custom_mode": False,
    "mv": "sonic-v4-5",
    "webhook_url": "https://relay.example/webhooks/aimusic/tok",
}
SONIC_CLIP = {"title": "Office Rain", "tags": "blues", "lyrics": LYRICS, "duration": "104.88"}
PRODUCER_PARAMS = {"task_type": "create_music", "sound": "rainy office blues"}
PRODUCER_CLIP = {"title": "Office Rain", "sound": "blues", "lyrics": LYRICS, "duration": 120}


async def planned(services: Services, family: str, kind: Any, style: str | None) -> Planned:
    params, clip = (
        (SONIC_PARAMS, SONIC_CLIP) if family == "sonic" else (PRODUCER_PARAMS, PRODUCER_CLIP)
    )
    await finished(services, REF, family, params, clip)
    got = await plan(services, Button(kind, REF, CLIP), style)
    assert isinstance(got, Planned), got
    return got


@pytest.mark.parametrize(
    ("family", "kind", "style", "params", "price"),
    [
        (
            "sonic",
            "regenerate",
            None,
            {k: v for k, v in SONIC_PARAMS.items() if k != "webhook_url"},
            15,
        ),
        ("producer", "regenerate", None, PRODUCER_PARAMS, 10),
        (
            "sonic",
            "extend",
            None,
            {
                "task_type": "extend_music",
                "custom_mode": False,
                "gpt_description_prompt": "rainy office blues",
                "tags": "blues",
                "continue_clip_id": CLIP,
                "continue_at": 104.88,
                "mv": "sonic-v4-5",
            },
            15,
        ),
        (
            "sonic",
            "remix",
            "  bossa   nova ",
            {
                "task_type": "create_music",
                "custom_mode": True,
                "prompt": LYRICS,
                "tags": "bossa nova",
                "title": "Office Rain",
                "mv": "sonic-v4-5",
            },
            15,
        ),
        (
            "producer",
            "remix",
            "bossa nova",
            {
                "task_type": "create_music",
                "lyrics": LYRICS,
                "sound": "bossa nova",
                "title": "Office Rain",
            },
            10,
        ),
    ],
)
async def test_each_button_plans_its_submission_from_the_store(
    services: Services,
    family: str,
    kind: Any,
    style: str | None,
    params: dict[str, Any],
    price: float,
) -> None:
    got = await planned(services, family, kind, style)
    assert family == got.request.family
    assert params == got.request.params
    assert price == got.price
    assert "Office Rain" == got.title
    assert fixed_ref("slack", Button(kind, REF, CLIP), REF, style) == got.ref


@pytest.mark.parametrize(
    ("family", "kind", "style", "clip", "reason"),
    [
        ("producer", "extend", None, PRODUCER_CLIP, "Extend works on sonic songs only"),
        ("sonic", "extend", None, {**SONIC_CLIP, "duration": None}, "length is not known"),
        ("sonic", "remix", "jazz", {**SONIC_CLIP, "lyrics": ""}, "has no lyrics to remix"),
        ("sonic", "remix", "   ", SONIC_CLIP, "Say which style"),
        ("sonic", "remix", "x" * (MAX_STYLE + 1), SONIC_CLIP, f"at most {MAX_STYLE}"),
    ],
)
async def test_a_click_that_cannot_be_done_says_why(
    services: Services, family: str, kind: Any, style: str | None, clip: Any, reason: str
) -> None:
    params = SONIC_PARAMS if family == "sonic" else PRODUCER_PARAMS
    await finished(services, REF, family, params, clip)
    got = await plan(services, Button(kind, REF, CLIP), style)
    assert isinstance(got, str)
    assert reason in got
    assert got.endswith("nothing was submitted.")


async def test_an_unknown_task_or_clip_is_refused(services: Services) -> None:
    await finished(services, REF, "sonic", SONIC_PARAMS, SONIC_CLIP)
    unknown_task = await plan(services, Button("regenerate", "f" * 32, CLIP), None)
    unknown_clip = await plan(services, Button("regenerate", REF, "other-clip"), None)
    assert isinstance(unknown_task, str) and "not known to this relay" in unknown_task
    assert isinstance(unknown_clip, str) and "not among its task's finished songs" in unknown_clip


def test_a_clicks_task_id_is_fixed_by_what_was_clicked() -> None:
    """The same click gives the same id; another kind, clip, app or style another one; a
    remix style counts the same whatever its case and spacing."""
    regen = Button("regenerate", REF, CLIP)
    remix = Button("remix", REF, CLIP)
    same = fixed_ref("slack", regen, REF, None)
    assert same == fixed_ref("slack", regen, REF, None)
    assert len(same) == 32
    others = {
        fixed_ref("discord", regen, REF, None),
        fixed_ref("slack", Button("extend", REF, CLIP), REF, None),
        fixed_ref("slack", Button("regenerate", REF, "clip-b"), REF, None),
        fixed_ref("slack", remix, REF, "jazz"),
        fixed_ref("slack", remix, REF, "rock"),
    }
    assert len(others) == 5 and same not in others
    assert fixed_ref("slack", remix, REF, "Bossa  Nova") == fixed_ref(
        "slack", remix, REF, "bossa nova"
    )


async def test_a_claimed_ref_is_refused_until_released_or_its_job_ends() -> None:
    jobs = ChatJobs()
    assert jobs.claim("r1")
    assert not jobs.claim("r1")
    jobs.release("r1")
    assert jobs.claim("r1")

    async def work() -> None:
        return None

    jobs.start("r1", Spent(user="U", channel="C", credits=1, at=time.time()), work())
    assert not jobs.claim("r1")
    await jobs.aclose()
    assert jobs.claim("r1")


def song_event(platform: str, clip: dict[str, Any], task_ref: str | None = REF) -> Event:
    return Event(
        id="e1",
        kind=EventKind.COMPLETED,
        task_id="up-1",
        clip_id=CLIP,
        platform=platform,
        clip=clip,
        source=Source.POLL,
        received_at=datetime.now(UTC),
        task_ref=task_ref,
    )


def test_slack_shows_the_buttons_only_when_asked() -> None:
    """The chat app's handler asks for buttons; an operator's Slack handler never gets them."""
    event = song_event("sonic", SONIC_CLIP)
    plain = render(event)
    with_buttons = render(event, buttons=True)
    assert plain is not None and with_buttons is not None
    assert [] == [b for b in plain.blocks if b["type"] == "actions"]
    [actions] = [b for b in with_buttons.blocks if b["type"] == "actions"]
    shown = [(e["text"]["text"], decode(e["action_id"]), e["value"]) for e in actions["elements"]]
    assert [
        ("🔁 Regenerate", Button("regenerate", REF, CLIP), encode(Button("regenerate", REF, CLIP))),
        ("⏩ Extend", Button("extend", REF, CLIP), encode(Button("extend", REF, CLIP))),
        ("🎨 Remix", Button("remix", REF, CLIP), encode(Button("remix", REF, CLIP))),
    ] == shown
    assert with_buttons.blocks[:-1] == plain.blocks


def test_a_song_made_elsewhere_gets_no_buttons() -> None:
    message = render(song_event("sonic", SONIC_CLIP, task_ref=None), buttons=True)
    assert message is not None
    assert [] == [b for b in message.blocks if b["type"] == "actions"]


async def test_two_processes_taking_one_click_send_it_upstream_once(
    tmp_path: Path, sandbox: str
) -> None:
    """Two relay processes (two `ChatJobs`, one database) each pass their own claim; when both
    find no task yet, the store's primary key refuses the second task before its create call,
    and that process stays quiet (no "not made" for a song that is being made)."""
    settings = Settings(
        aimusic_api_key="k",  # type: ignore[arg-type]
        aimusic_base_url=sandbox,
        relay_secret_key="s",  # type: ignore[arg-type]
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        relay_config=None,
    )
    services = build_services(settings)
    await services.store.open()
    sound = f"two process click {time.time_ns()}"
    said: list[str] = []

    async def tell(text: str) -> None:
        said.append(text)

    try:
        await finished(services, REF, "producer", {"sound": sound}, PRODUCER_CLIP)
        slack = SlackChat(signing_secret="x", token="xoxb-x")  # type: ignore[arg-type]
        asker = Asker(app="slack", user="U1", channel="C1")
        button = Button("regenerate", REF, CLIP)
        one, two = ChatJobs(), ChatJobs()
        answers = await asyncio.gather(
            *(act(services, slack, jobs, asker, button, None, tell) for jobs in (one, two))
        )
        await one.aclose()
        await two.aclose()
        stored = await services.store.reads.get_task(fixed_ref("slack", button, REF, None))
    finally:
        await services.aclose()
    # Usually both find no task and the primary key stops the second; on a busy machine the
    # first may be stored before the second looks, which then answers "already asked".
    # Either way: one started, the other never a "not made", one song upstream.
    assert 1 <= sum(a.started for a in answers), answers
    assert all(a.started or a.text.startswith("That was already asked for") for a in answers)
    assert [] == said
    assert stored is not None and stored.upstream_id is not None
    tasks = httpx.get(f"{sandbox}/sandbox/tasks", timeout=5).json()
    assert 1 == len([t for t in tasks if (t.get("prompt") or {}).get("sound") == sound])
