"""What one captured callback (or the shared secret) can no longer do, against a real relay.

Each test is a regression test for a numbered point of the second hardening round: replays
with fresh unsigned ids, the unsigned `X-Webhook-Event` header, webhook-id scope, the shared
route touching the relay's own tasks, a conflicting upstream id, the clip cap and a dropped
PostgreSQL schema. Every relay here is a real `serve` process on loopback with its own SQLite
file (or PostgreSQL schema), fed by signed HTTP requests.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from receiver.signing import CallbackTokens, derive_task_secret
from tests.conftest import POSTGRES_URL, Relay, signed, songs

SHARED = "shared-secret-1"


def post(relay: Relay, headers: dict[str, str], body: bytes, path: str = "") -> httpx.Response:
    url = f"{relay.url}/webhooks/aimusic{path}"
    return httpx.post(url, content=body, headers=headers, timeout=10)


def inbox_bytes(relay: Relay) -> int:
    with sqlite3.connect(relay.db_path) as conn:
        return int(conn.execute("SELECT coalesce(sum(length(body)), 0) FROM inbox").fetchone()[0])


def events_of(relay: Relay, upstream_id: str) -> list[tuple[str, str]]:
    with sqlite3.connect(relay.db_path) as conn:
        rows = conn.execute(
            "SELECT clip_id, kind FROM events WHERE task_id = ? ORDER BY kind", (upstream_id,)
        ).fetchall()
    return [(str(clip), str(kind)) for clip, kind in rows]


def metric(relay: Relay, name: str) -> float:
    text = httpx.get(f"{relay.url}/metrics", timeout=10).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found is not None, f"{name} not in /metrics"
    return float(found.group(1))


def song_body(task_id: str, *, lyrics_bytes: int = 0, **clip: Any) -> dict[str, Any]:
    fields = {"clip_id": "c1", "state": "succeeded", "audio_url": "http://127.0.0.1:9/a.mp3"}
    fields.update(clip)
    if lyrics_bytes:
        fields["lyrics"] = "la " * (lyrics_bytes // 3)
    return {"task_id": task_id, "platform": "producer", "data": [fields]}


# 1. Replay amplification -------------------------------------------------------------------


def test_a_captured_callback_replayed_with_fresh_ids_is_stored_once(relay: Relay) -> None:
    """The same signed bytes replayed 20 times, each with a new X-Webhook-Id (and then with no
    id at all), add no inbox row and not one byte after the first."""
    headers, body = signed(song_body("replayed-1", lyrics_bytes=200_000), SHARED)
    first = post(relay, headers, body)
    assert first.status_code == 200 and first.json()["status"] == "accepted", first.text
    stored = inbox_bytes(relay)
    assert stored == len(body)
    for n in range(20):
        replay = {**headers, "X-Webhook-Id": f"fresh-{n}", "Idempotency-Key": f"fresh-{n}"}
        if n >= 10:
            replay.pop("X-Webhook-Id")
            replay.pop("Idempotency-Key")
        answer = post(relay, replay, body)
        assert answer.status_code == 200 and answer.json()["status"] == "duplicate", answer.text
    assert relay.count("inbox") == 1
    assert inbox_bytes(relay) == stored
    assert relay.count("events") == 1


def test_a_resent_callback_with_nothing_new_stores_no_body(relay: Relay) -> None:
    """The provider's own resend (new id, new timestamp, so a new signature) of facts already
    recorded is a duplicate and leaves no second copy of the body."""
    body = song_body("resent-1", lyrics_bytes=50_000)
    post(relay, *signed(body, SHARED, timestamp=int(time.time()) - 10))
    answer = post(relay, *signed(body, SHARED))
    assert answer.json()["status"] == "duplicate", answer.text
    assert relay.count("inbox") == 1


# 2. The unsigned event header ------------------------------------------------------------


def test_the_signed_body_decides_the_kind_over_the_header(relay: Relay) -> None:
    """A clip without state under the body's own `event: song.completed`: a `song.failed`
    header is ignored (and counted); the same signed bytes under other headers add nothing."""
    body = song_body("kinds-1", state=None)
    del body["data"][0]["state"]
    body["event"] = "song.completed"
    ignored_before = metric(relay, "aimusic_relay_callback_event_header_ignored_total")
    headers, raw = signed(body, SHARED, event="song.failed")
    assert post(relay, headers, raw).json()["status"] == "accepted"
    assert events_of(relay, "kinds-1") == [("c1", "song.completed")]
    assert metric(relay, "aimusic_relay_callback_event_header_ignored_total") == (
        ignored_before + 1
    )
    for event in ("song.streaming", "song.failed", "song.completed"):
        again = {**headers, "X-Webhook-Event": event, "X-Webhook-Id": f"other-{event}"}
        assert post(relay, again, raw).json()["status"] == "duplicate"
    assert events_of(relay, "kinds-1") == [("c1", "song.completed")]


def test_a_header_never_makes_a_second_event_from_one_signed_body(relay: Relay) -> None:
    """When the body says nothing about its kind, the header is all there is; but the same
    signed body under a second header is the same callback, not a second fact."""
    body = {"task_id": "kinds-2", "data": [{"clip_id": "c1", "audio_url": "http://x/a.mp3"}]}
    headers, raw = signed(body, SHARED, event="song.completed")
    assert post(relay, headers, raw).json()["status"] == "accepted"
    for event in ("song.failed", "song.streaming"):
        again = {**headers, "X-Webhook-Event": event, "X-Webhook-Id": f"w-{event}"}
        assert post(relay, again, raw).json()["status"] == "duplicate"
    assert events_of(relay, "kinds-2") == [("c1", "song.completed")]


# 7. Webhook ids are scoped ----------------------------------------------------------------


def test_a_webhook_id_on_one_task_does_not_shadow_another_tasks(relay: Relay) -> None:
    """Task A's callback with id W first; task B's genuine callback with the same id W is
    accepted and recorded."""
    a = post(relay, *signed(song_body("scope-a"), SHARED, webhook_id="W-1"))
    b = post(relay, *signed(song_body("scope-b"), SHARED, webhook_id="W-1"))
    assert a.json()["status"] == "accepted", a.text
    assert b.json()["status"] == "accepted", b.text
    assert events_of(relay, "scope-b") == [("c1", "song.completed")]
    # the provider's retry of B (same id, same task) is still a duplicate
    retry = post(relay, *signed(song_body("scope-b", clip_id="c2"), SHARED, webhook_id="W-1"))
    assert retry.json()["status"] == "duplicate", retry.text


# 8. The shared route cannot touch the relay's own tasks ---------------------------------


def test_the_shared_route_cannot_inject_into_a_task_the_relay_submitted(relay: Relay) -> None:
    """A task the relay created has its own URL and secret: a callback signed with the shared
    secret naming its upstream id is refused (403) and stores nothing."""
    task = relay.submit("ours alone #nocallback")
    upstream_id = task["upstream_id"]
    before = relay.count("inbox"), relay.count("events")
    body = song_body(upstream_id, clip_id="injected", audio_url="http://127.0.0.1:9/evil.mp3")
    answer = post(relay, *signed(body, SHARED))
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"] == "wrong_route"
    assert (relay.count("inbox"), relay.count("events")) == before
    assert all(e["clip_id"] != "injected" for e in songs(relay.task(task["id"])))


# 9. A per-task callback naming another task's upstream id ------------------------------


def test_a_callback_naming_another_tasks_upstream_id_is_a_409(relay: Relay) -> None:
    """The task's create failed (no upstream id); its own callback URL then names the upstream
    id of a task already recorded: 409, nothing stored (it was a 500 IntegrityError)."""
    post(relay, *signed(song_body("taken-1"), SHARED))
    refused = httpx.post(
        f"{relay.url}/api/tasks",
        json={"params": {"sound": "refused", "lyrics": "moderated #copyright"}},
        headers=relay.admin,
        timeout=15,
    )
    assert refused.status_code >= 400, refused.text
    with sqlite3.connect(relay.db_path) as conn:
        (ref,) = conn.execute(
            "SELECT id FROM tasks WHERE origin = 'relay' AND upstream_id IS NULL"
        ).fetchone()
    key = relay.env["RELAY_SECRET_KEY"]
    token = CallbackTokens([key]).dumps(ref)
    before = relay.count("inbox"), relay.count("events")
    answer = post(
        relay,
        *signed(song_body("taken-1", clip_id="c9"), derive_task_secret(key, ref)),
        path=f"/{token}",
    )
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"] == "task_conflict"
    assert (relay.count("inbox"), relay.count("events")) == before


# 12. Clips per callback are capped --------------------------------------------------------


def test_clips_per_callback_are_capped(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay(AIMUSIC_WEBHOOK_SECRET=SHARED, RELAY_MAX_CLIPS_PER_CALLBACK="5")

    def many(n: int, task_id: str) -> dict[str, Any]:
        clips = [{"clip_id": f"c{i}", "state": "succeeded"} for i in range(n)]
        return {"task_id": task_id, "data": clips}

    over = post(relay, *signed(many(6, "cap-1"), SHARED))
    assert over.status_code == 413, over.text[:300]
    assert over.json()["error"] == "too_many_clips"
    assert "RELAY_MAX_CLIPS_PER_CALLBACK" in over.json()["detail"]
    assert relay.count("inbox") == 0 and relay.count("events") == 0
    within = post(relay, *signed(many(5, "cap-2"), SHARED))
    assert within.status_code == 200, within.text[:300]
    assert relay.count("events") == 5


def test_the_default_clip_cap_refuses_ten_thousand_clips(relay: Relay) -> None:
    clips = [{"clip_id": f"c{i}", "state": "succeeded"} for i in range(10_000)]
    answer = post(relay, *signed({"task_id": "flood", "data": clips}, SHARED))
    assert answer.status_code == 413, answer.text[:300]
    assert relay.count("events") == 0


# 4. A dropped PostgreSQL schema is a 503, not a 500 -------------------------------------


def test_a_dropped_postgres_schema_answers_503_json(
    make_relay: Callable[..., Relay], make_pg_url: Callable[[], str]
) -> None:
    url = make_pg_url()
    relay = make_relay(AIMUSIC_WEBHOOK_SECRET=SHARED, DATABASE_URL=url)
    assert post(relay, *signed(song_body("pg-1"), SHARED)).status_code == 200
    schema = url.split("search_path%3D", 1)[1].split("&", 1)[0]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {schema}.inbox CASCADE")
        conn.execute(f"DROP TABLE {schema}.tasks CASCADE")
    answer = post(relay, *signed(song_body("pg-2"), SHARED))
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "store_unavailable"
    assert answer.headers["retry-after"] == "5"
    listed = httpx.get(f"{relay.url}/api/tasks", headers=relay.admin, timeout=10)
    assert listed.status_code == 503, listed.text
    assert listed.json()["error"] == "store_unavailable"
    assert "Traceback" not in answer.text + listed.text


@pytest.mark.parametrize("scheme", ["sqlite"])
def test_a_missing_sqlite_table_answers_503_json(
    make_relay: Callable[..., Relay], scheme: str
) -> None:
    relay = make_relay(AIMUSIC_WEBHOOK_SECRET=SHARED)
    with sqlite3.connect(relay.db_path) as conn:
        conn.execute("DROP TABLE deliveries")
    answer = post(relay, *signed(song_body("sq-1"), SHARED))
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "store_unavailable"


# Routing refusals on the webhook paths keep the contract's JSON --------------------------


def test_a_mistaken_webhook_url_is_answered_in_json(relay: Relay) -> None:
    """A token holding a '/' (or a wrong method) is refused with `{"error", "detail"}`, as
    every webhook answer is, not Starlette's plain text."""
    missing = httpx.post(f"{relay.url}/webhooks/aimusic/%2F0", content=b"{}", timeout=10)
    assert (404, "not_found") == (missing.status_code, missing.json()["error"])
    wrong = httpx.get(f"{relay.url}/webhooks/aimusic", timeout=10)
    assert (405, "method_not_allowed") == (wrong.status_code, wrong.json()["error"])
    assert "POST" in wrong.headers["allow"]
