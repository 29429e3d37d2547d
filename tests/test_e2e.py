"""The spine end to end: relay under uvicorn, sandbox upstream, signed callbacks, SQLite, disk."""

from __future__ import annotations

import json
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Relay, finished_sandbox_task, sandbox_task, signed, songs

pytestmark = pytest.mark.slow


def test_song_reaches_disk_with_cover_and_metadata(relay: Relay) -> None:
    """A submitted task's callback puts a playable WAV, its cover and its metadata on disk."""
    task = relay.submit("warm synthwave", title="Night Drive")
    assert task["state"] == "submitted"
    done = relay.wait_settled(task["id"])
    assert done["state"] == "succeeded"
    [event] = songs(done)
    assert event["kind"] == "song.completed"
    [delivery] = event["deliveries"]
    assert delivery["state"] == "succeeded"
    audio = delivery["result"]["path"]
    with wave.open(audio) as song:
        assert song.getnframes() > 0
    metadata = json.loads(Path(delivery["result"]["metadata"]).read_text())
    assert metadata["title"] == "Night Drive"
    assert delivery["result"]["cover"].endswith(".png")
    assert [str(p) for p in relay.audio_files()] == [audio]


def test_failed_task_is_recorded_and_dispatched_as_failure(relay: Relay) -> None:
    """A task that fails upstream becomes a song.failed event the disk handler records."""
    task = relay.submit("broken #fail")
    done = relay.wait_settled(task["id"])
    assert done["state"] == "failed"
    assert {e["kind"] for e in songs(done)} == {"song.failed"}
    delivery = songs(done)[0]["deliveries"][0]
    assert delivery["state"] == "succeeded"
    assert relay.audio_files() == []
    assert list(relay.songs.rglob("*.failed.json"))


def test_duplicate_callbacks_make_one_file_and_one_delivery(relay: Relay, sandbox: str) -> None:
    """#dup delivers the callback three times (two ids); one event, one delivery, one file."""
    task = relay.submit("twice as nice #dup")
    done = relay.wait_settled(task["id"])
    deadline = time.monotonic() + 10
    while len(_delivered(sandbox, done["upstream_id"])) < 3:
        assert time.monotonic() < deadline, "the sandbox did not send three callbacks"
        time.sleep(0.05)
    time.sleep(0.3)  # let a wrongly duplicated delivery surface if there were one
    done = relay.task(task["id"])
    assert len(songs(done)) == 1
    assert len(songs(done)[0]["deliveries"]) == 1
    assert len(relay.audio_files()) == 1
    assert relay.count("deliveries") == 1
    # only the first copy is stored: the same X-Webhook-Id again, and a new id bringing no
    # new fact, leave no inbox row (a duplicate never stores its body again)
    assert relay.count("inbox", "source = 'callback'") == 1


def _delivered(sandbox: str, task_id: str) -> list[dict[str, Any]]:
    attempts = sandbox_task(sandbox, task_id)["callback_attempts"]
    return [a for a in attempts if a["status"] == 200]


def test_badly_signed_callback_is_refused_and_nothing_stored(relay: Relay, sandbox: str) -> None:
    """#badsig callbacks get 401 every time and leave no event behind."""
    task = relay.submit("forged #badsig")
    upstream_id = task["upstream_id"]
    deadline = time.monotonic() + 15
    while True:
        attempts = sandbox_task(sandbox, upstream_id)["callback_attempts"]
        if len(attempts) >= 2:
            break
        assert time.monotonic() < deadline, attempts
        time.sleep(0.1)
    assert all(a.get("status") == 401 for a in attempts), attempts
    assert songs(relay.task(task["id"])) == []
    assert relay.count("inbox", "source = 'callback'") == 0


def _shared(relay: Relay, headers: dict[str, str], body: bytes) -> httpx.Response:
    return httpx.post(f"{relay.url}/webhooks/aimusic", content=body, headers=headers, timeout=10)


def _body() -> dict[str, Any]:
    return {
        "code": 200,
        "task_id": "ext-1",
        "platform": "producer",
        "event": "song.completed",
        "data": [{"clip_id": "c1", "state": "succeeded", "title": "x"}],
    }


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("stale", 401, "stale_timestamp"),
        ("future", 401, "stale_timestamp"),
        ("missing", 401, "missing_signature"),
        ("wrong_secret", 401, "bad_signature"),
        ("tampered", 401, "bad_signature"),
        ("not_json_type", 415, "unsupported_media_type"),
        ("malformed", 400, "bad_payload"),
        ("wrong_shape", 400, "bad_payload"),
        ("oversized", 413, "too_large"),
        ("bad_token", 401, "bad_token"),
    ],
)
def test_bad_callbacks_get_their_status_and_store_nothing(
    relay: Relay, case: str, status: int, code: str
) -> None:
    """Each kind of bad callback gets the contract's status and JSON error; nothing is stored."""
    secret, url = "shared-secret-1", f"{relay.url}/webhooks/aimusic"
    headers, raw = signed(_body(), secret)
    if case == "stale":
        headers, raw = signed(_body(), secret, timestamp=int(time.time()) - 301)
    elif case == "future":
        headers, raw = signed(_body(), secret, timestamp=int(time.time()) + 400)
    elif case == "missing":
        del headers["X-Webhook-Signature"]
    elif case == "wrong_secret":
        headers, raw = signed(_body(), "not-the-secret")
    elif case == "tampered":
        raw = raw.replace(b"ext-1", b"ext-2")
    elif case == "not_json_type":
        headers["Content-Type"] = "text/plain"
    elif case == "malformed":
        headers, raw = signed(b'{"code": 200, "data": [', secret)
    elif case == "wrong_shape":
        headers, raw = signed({"data": "not a list of clips"}, secret)
    elif case == "oversized":
        headers, raw = signed(b"{" + b" " * (1024 * 1024) + b"}", secret)
    elif case == "bad_token":
        url = f"{relay.url}/webhooks/aimusic/not-a-real-token"
    answer = httpx.post(url, content=raw, headers=headers, timeout=10)
    assert (status, code) == (answer.status_code, answer.json()["error"])
    assert "shared-secret-1" not in answer.text
    assert relay.count("inbox") == 0
    assert relay.count("events") == 0


def test_oversized_chunked_body_is_refused(relay: Relay) -> None:
    """A body without Content-Length is cut off at the limit with 413."""
    headers, _ = signed(b"{}", "shared-secret-1")

    def chunks() -> Any:
        for _ in range(64):
            yield b" " * 65536

    answer = httpx.post(
        f"{relay.url}/webhooks/aimusic", content=chunks(), headers=headers, timeout=10
    )
    assert answer.status_code == 413
    assert relay.count("inbox") == 0


def test_secret_rotation_accepts_old_and_new_and_dispatches_external_task(
    make_relay: Callable[..., Relay], sandbox: str
) -> None:
    """With `new,old` both secrets verify; a third does not; an external task is dispatched."""
    relay = make_relay(AIMUSIC_WEBHOOK_SECRET="new-secret,old-secret")
    body = finished_sandbox_task(sandbox, "rotation test")
    for secret, expected in (("old-secret", 200), ("new-secret", 200), ("other", 401)):
        headers, raw = signed(body, secret)
        assert _shared(relay, headers, raw).status_code == expected
    done = relay.wait_settled(body["task_id"])
    assert done["origin"] == "external"
    assert len(songs(done)) == 1
    assert songs(done)[0]["deliveries"][0]["state"] == "succeeded"
    assert len(relay.audio_files()) == 1


def _flaky_config(fail_times: int, permanent: bool = False, max_attempts: int = 5) -> str:
    return (
        '[[handlers]]\nname = "flaky"\ntype = "tests.plugins:FlakyHandler"\n'
        f"fail_times = {fail_times}\npermanent = {'true' if permanent else 'false'}\n"
        'counter_file = "{workdir}/calls"\n'
        f"max_attempts = {max_attempts}\nbackoff_base_s = 0.05\nbackoff_max_s = 0.2\n"
    )


def test_handler_failing_twice_then_succeeding_is_retried(
    make_relay: Callable[..., Relay],
) -> None:
    """Two retryable failures, then success: three attempts, each failure's error recorded."""
    relay = make_relay(config=_flaky_config(fail_times=2))
    task = relay.submit("third time lucky")
    done = relay.wait_settled(task["id"])
    [delivery] = songs(done)[0]["deliveries"]
    assert delivery["state"] == "succeeded"
    assert delivery["attempts"] == 3
    assert [a["outcome"] for a in delivery["attempt_log"]] == ["failed", "failed", "succeeded"]
    assert delivery["attempt_log"][0]["error"] == "planned failure 1 of 2"
    assert delivery["result"]["calls"] == 3


def test_handler_that_always_fails_is_dead_lettered(make_relay: Callable[..., Relay]) -> None:
    """A handler failing on every attempt ends dead after max_attempts, with its last error."""
    relay = make_relay(config=_flaky_config(fail_times=99, max_attempts=3))
    task = relay.submit("never")
    done = relay.wait_settled(task["id"])
    [delivery] = songs(done)[0]["deliveries"]
    assert delivery["state"] == "dead"
    assert delivery["attempts"] == 3
    assert delivery["last_error"] == "planned failure 3 of 99"
    assert delivery["blame"] == "destination"
    dead = httpx.get(f"{relay.url}/api/deliveries?state=dead", headers=relay.admin).json()
    assert [d["id"] for d in dead] == [delivery["id"]]


def test_permanent_handler_error_is_not_retried(make_relay: Callable[..., Relay]) -> None:
    """A non-retryable HandlerError dead-letters on the first attempt."""
    relay = make_relay(config=_flaky_config(fail_times=1, permanent=True))
    done = relay.wait_settled(relay.submit("no retry")["id"])
    [delivery] = songs(done)[0]["deliveries"]
    assert (delivery["state"], delivery["attempts"]) == ("dead", 1)


def test_kill_9_after_200_loses_nothing(make_relay: Callable[..., Relay], sandbox: str) -> None:
    """kill -9 right after the 200; after a restart the song reaches disk exactly once."""
    relay = make_relay(AIMUSIC_WEBHOOK_SECRET="crash-secret", RELAY_LEASE_S="1")
    body = finished_sandbox_task(sandbox, "crash test")
    headers, raw = signed(body, "crash-secret")
    answer = _shared(relay, headers, raw)
    relay.kill9()
    assert answer.status_code == 200
    assert relay.count("events") == 1  # committed before the answer
    relay.start()
    done = relay.wait_settled(body["task_id"])
    [delivery] = songs(done)[0]["deliveries"]
    assert delivery["state"] == "succeeded"
    assert len(relay.audio_files()) == 1
    headers, raw = signed(body, "crash-secret")  # the provider retries after the crash
    assert _shared(relay, headers, raw).json()["status"] == "duplicate"
    assert relay.count("deliveries") == 1


def test_streaming_callback_is_stored_but_not_dispatched_by_default(relay: Relay) -> None:
    """#streaming sends a streaming clip first: stored as song.streaming, no delivery for it."""
    done = relay.wait_settled(relay.submit("early preview #streaming")["id"])
    kinds = sorted(e["kind"] for e in songs(done))
    assert kinds == ["song.completed", "song.streaming"]
    streaming = next(e for e in songs(done) if e["kind"] == "song.streaming")
    assert streaming["deliveries"] == []
    assert len(relay.audio_files()) == 1


def test_unknown_create_outcome_is_not_resent(make_relay: Callable[..., Relay]) -> None:
    """A 500 on create marks the task unknown and tells the caller; it is not sent again."""
    from receiver.sandbox import SandboxOptions, create_sandbox_app
    from tests.servers import run_asgi

    with run_asgi(create_sandbox_app(SandboxOptions(error_rate=1.0))) as broken:
        relay = make_relay(AIMUSIC_BASE_URL=broken)
        task = relay.submit("anything")
        assert task["state"] == "unknown"
        assert "500" in task["error"] or "unknown" in task["error"].lower()
        assert httpx.get(f"{broken}/sandbox/tasks").json() == []
