"""The admin API's answers to the errors users meet."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from receiver.sandbox import SandboxOptions, create_sandbox_app
from tests.conftest import Relay
from tests.servers import run_asgi

pytestmark = pytest.mark.slow


def _post(relay: Relay, body: dict[str, object], **headers: str) -> httpx.Response:
    return httpx.post(
        f"{relay.url}/api/tasks", json=body, headers={**relay.admin, **headers}, timeout=30
    )


def test_admin_api_refuses_without_or_with_a_wrong_token(relay: Relay) -> None:
    """No token and a wrong token both get 401 with the contract's error body."""
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        answer = httpx.get(f"{relay.url}/api/tasks", headers=headers)
        assert answer.status_code == 401
        assert set(answer.json()) == {"error", "detail"}


def test_retired_task_type_is_refused_with_410_and_advice(relay: Relay) -> None:
    """A legacy producer task type answers 410 naming the replacement; nothing is created."""
    answer = _post(relay, {"params": {"task_type": "cover_music", "sound": "x"}})
    assert answer.status_code == 410
    assert "create_music" in answer.json()["detail"]


def test_nuro_is_gone_with_the_replacements(relay: Relay) -> None:
    """Nuro answers 410 and points at sonic and producer."""
    answer = _post(relay, {"family": "nuro", "params": {"sound": "x"}})
    assert answer.status_code == 410
    assert "sonic" in answer.json()["detail"]


def test_bad_request_names_the_field(relay: Relay) -> None:
    """An unknown top-level field is refused with its name."""
    answer = _post(relay, {"params": {}, "colour": "red"})
    assert (answer.status_code, answer.json()["error"]) == (400, "bad_request")
    assert "colour" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("status", "code"), [(402, "insufficient_credits"), (403, "insufficient_credits")]
)
def test_out_of_credits_is_402_with_a_clear_message(
    make_relay: Callable[..., Relay], status: int, code: str
) -> None:
    """Out of credits (402, or 403 with the credits message) answers 402 insufficient_credits."""
    options = SandboxOptions(credits=5, out_of_credits_status=status)
    with run_asgi(create_sandbox_app(options)) as broke:
        relay = make_relay(AIMUSIC_BASE_URL=broke)
        answer = _post(relay, {"params": {"sound": "x"}})
    assert (answer.status_code, answer.json()["error"]) == (402, code)
    assert "credits" in answer.json()["detail"]


def test_create_429_is_retried_after_retry_after(make_relay: Callable[..., Relay]) -> None:
    """With the provider rate-limiting, quick submits all succeed: each 429 (nothing created)
    is retried after its Retry-After, and no task is created twice."""
    with run_asgi(create_sandbox_app(SandboxOptions(rate_limit=True, delay_s=0.3))) as limited:
        relay = make_relay(AIMUSIC_BASE_URL=limited, RELAY_POLL_GRACE_S="60")
        started = time.monotonic()
        tasks = [_post(relay, {"params": {"sound": f"song {i}"}}) for i in range(4)]
        elapsed = time.monotonic() - started
        created = httpx.get(f"{limited}/sandbox/tasks").json()
    assert [t.status_code for t in tasks] == [202] * 4
    assert len(created) == 4
    assert elapsed >= 1.0  # at least one Retry-After was waited out
    assert "create rate-limited; retrying after Retry-After" in relay.log()
