"""The refusals users meet read as one helpful line: credits, subscription, lyrics, key, 429."""

# STYLE.md asks for `assert expected == actual`, which ruff's SIM300 calls a Yoda condition.

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from receiver.errors import (
    InsufficientCredits,
    RateLimited,
    Unauthorized,
    UpstreamError,
    UpstreamForbidden,
)
from receiver.sandbox import SandboxOptions, create_sandbox_app
from receiver.upstream.client import UpstreamClient
from tests.servers import run_asgi

KEY = "errors-test-key"
PRODUCER = {"task_type": "create_music", "sound": "sea shanty", "lyrics": "yo ho"}
SONIC = {
    "task_type": "create_music",
    "custom_mode": True,
    "prompt": "yo ho, yo ho",
    "mv": "sonic-v4-5",
}
Call = Callable[[UpstreamClient], Awaitable[Any]]
PAID: dict[str, Call] = {
    "producer create": lambda c: c.create_producer(PRODUCER),
    "sonic create": lambda c: c.create_sonic(SONIC),
    "lyrics create": lambda c: c.lyrics_create({"prompt": "shanty"}),
    "sonic lyrics request": lambda c: c.sonic_lyrics("shanty"),
}


@pytest.fixture(scope="module")
def make_sandbox() -> Iterator[Callable[..., str]]:
    """A sandbox (accepting KEY) per set of options, shared by the tests of this module."""
    running: dict[str, str] = {}
    with contextlib.ExitStack() as stack:

        def make(**options: Any) -> str:
            name = repr(sorted(options.items()))
            if name not in running:
                app = create_sandbox_app(SandboxOptions(api_key=KEY, delay_s=0.2, **options))
                running[name] = stack.enter_context(run_asgi(app))
            return running[name]

        yield make


def assert_one_line(error: UpstreamError) -> None:
    """Fit for `error: <message>` on a terminal: one line, not huge, no key."""
    assert "\n" not in error.message and len(error.message) < 400
    assert KEY not in error.message and str(error) == error.message


async def test_no_subscription_refuses_every_paid_call(make_sandbox: Callable[..., str]) -> None:
    """Without a subscription each paid call is UpstreamForbidden saying so; credits still read."""
    async with UpstreamClient(make_sandbox(subscription_active=False, credits=50), KEY) as up:
        for what, call in PAID.items():
            with pytest.raises(UpstreamForbidden) as caught:
                await call(up)
            assert 403 == caught.value.status
            assert caught.value.message.startswith(
                f"the AI Music API refused the {what} (403): no active subscription"
            )
            assert "the account needs an active subscription: subscribe" in caught.value.message
            assert_one_line(caught.value)
        assert 50 == (await up.credits()).credits


@pytest.mark.parametrize(
    ("what", "call"),
    [
        ("producer create", lambda c: c.create_producer({**PRODUCER, "lyrics": "la #copyright"})),
        ("sonic create", lambda c: c.create_sonic({**SONIC, "prompt": "la #copyright"})),
    ],
)
async def test_copyright_lyrics_are_rejected(
    make_sandbox: Callable[..., str], what: str, call: Call
) -> None:
    """Lyrics the provider rejects are UpstreamForbidden that says to change them; no charge."""
    url = make_sandbox(credits=50)
    async with UpstreamClient(url, KEY) as up:
        with pytest.raises(UpstreamForbidden) as caught:
            await call(up)
        assert 50 == (await up.credits()).credits
    assert (
        f"the AI Music API rejected the lyrics of the {what} (403): lyrics rejected: copyright "
        "— change the lyrics (format, copyrighted text, moderation) and submit again"
    ) == caught.value.message
    assert_one_line(caught.value)
    assert [] == httpx.get(f"{url}/sandbox/tasks", timeout=5).json()


@pytest.mark.parametrize("status", [402, 403])
@pytest.mark.parametrize(
    ("what", "cost"),
    [("producer create", 10), ("sonic create", 15), ("lyrics create", 1)],
)
async def test_out_of_credits_names_the_price(
    make_sandbox: Callable[..., str], status: int, what: str, cost: int
) -> None:
    """402 and 403-with-the-credits-message are InsufficientCredits naming what it costs."""
    async with UpstreamClient(make_sandbox(credits=0, out_of_credits_status=status), KEY) as up:
        with pytest.raises(InsufficientCredits) as caught:
            await PAID[what](up)
    assert status == caught.value.status
    assert (
        "out of credits: The remaining credits are not enough to complete this request. "
        f"— the {what} costs {cost} credits; top up in your AI Music API account "
        "(see the balance with `aimusic-relay credits`)"
    ) == caught.value.message
    assert_one_line(caught.value)


@pytest.mark.parametrize("what", list(PAID))
async def test_wrong_key_is_unauthorized(make_sandbox: Callable[..., str], what: str) -> None:
    """A refused key is Unauthorized pointing at AIMUSIC_API_KEY, on every call."""
    async with UpstreamClient(make_sandbox(), "not-the-key") as up:
        with pytest.raises(Unauthorized) as caught:
            await PAID[what](up)
    assert (
        "the AI Music API refused the API key (401): Unauthorized: the API key is invalid. "
        "— check AIMUSIC_API_KEY"
    ) == caught.value.message
    assert_one_line(caught.value)


@pytest.mark.parametrize("what", ["producer create", "sonic create"])
async def test_rate_limited_create_created_nothing(
    make_sandbox: Callable[..., str], what: str
) -> None:
    """A 429 on a create carries retry_after and says nothing was created; no task exists."""
    # A seed of its own gives each case its own sandbox, so its rate limiter starts empty.
    url = make_sandbox(rate_limit=True, seed=list(PAID).index(what))
    async with UpstreamClient(url, KEY) as up:
        await up.credits()
        await up.credits()
        with pytest.raises(RateLimited) as caught:
            await PAID[what](up)
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1
    assert caught.value.message.startswith(f"rate limited by the AI Music API on the {what}: ")
    assert caught.value.message.endswith("— nothing was created, so it is safe to send again")
    assert_one_line(caught.value)
    assert [] == httpx.get(f"{url}/sandbox/tasks", timeout=5).json()
