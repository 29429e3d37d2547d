"""The `/admin` dashboard over HTTP on a real relay process: login, CSRF, replay, redaction."""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.redact import HIDDEN, Redactor
from receiver.sandbox import SandboxOptions, create_sandbox_app
from receiver.signing import CallbackTokens
from receiver.store import Inbound, NewTask, open_store
from tests.conftest import Relay, finished_sandbox_task, signed, songs
from tests.servers import run_asgi

pytestmark = pytest.mark.slow

FLAKY_ONCE = (
    '[[handlers]]\nname = "archive"\ntype = "disk"\npath = "{workdir}/songs"\n'
    '[[handlers]]\nname = "flaky"\ntype = "tests.plugins:FlakyHandler"\n'
    'fail_times = 1\npermanent = true\ncounter_file = "{workdir}/calls"\n'
)
"""`archive` always works; `flaky` dead-letters its very first call and succeeds afterwards."""


class Admin:
    """A signed-in dashboard user: an httpx client holding the session cookie."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.http = httpx.Client(base_url=relay.url, timeout=15, follow_redirects=False)
        self.token = relay.env["RELAY_ADMIN_TOKEN"]

    def csrf(self, path: str = "/admin/login") -> str:
        page = self.http.get(path)
        assert page.status_code == 200, page.text
        return csrf_of(page.text)

    def login(self) -> Admin:
        answer = self.http.post(
            "/admin/login", data={"csrf": self.csrf(), "token": self.token, "next": "/admin"}
        )
        assert (answer.status_code, answer.headers["location"]) == (303, "/admin")
        return self

    def post(self, path: str, csrf: str | None, **fields: str) -> httpx.Response:
        data = {**fields, **({"csrf": csrf} if csrf is not None else {})}
        return self.http.post(path, data=data)


@pytest.fixture
def make_admin() -> Iterator[Callable[[Relay], Admin]]:
    """Factory: a signed-out `Admin` for a relay; its client is closed at the end."""
    made: list[Admin] = []

    def factory(relay: Relay) -> Admin:
        made.append(Admin(relay))
        return made[-1]

    yield factory
    for admin in made:
        admin.http.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def dead_delivery(relay: Relay) -> tuple[dict[str, Any], dict[str, Any]]:
    """Submit a song to FLAKY_ONCE; return the settled task and its dead `flaky` delivery."""
    done = relay.wait_settled(relay.submit("dead on arrival", title="Dead Letter")["id"])
    [delivery] = [d for d in songs(done)[0]["deliveries"] if d["handler"] == "flaky"]
    assert delivery["state"] == "dead"
    return done, delivery


def delivery_state(relay: Relay, delivery_id: str) -> str:
    with sqlite3.connect(relay.db_path) as conn:
        row = conn.execute("SELECT state FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
    return str(row[0])


def wait_state(relay: Relay, delivery_id: str, expected: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while delivery_state(relay, delivery_id) != expected:
        assert time.monotonic() < deadline, f"delivery never became {expected}"
        time.sleep(0.05)


def test_without_admin_token_the_dashboard_is_disabled(make_relay: Callable[..., Relay]) -> None:
    """No RELAY_ADMIN_TOKEN (or an empty one): every page is a 404 that says how to enable it."""
    relay = make_relay(RELAY_ADMIN_TOKEN="")
    for method, path in [("GET", "/admin"), ("GET", "/admin/login"), ("POST", "/admin/login")]:
        answer = httpx.request(method, relay.url + path, data={"token": ""}, timeout=10)
        assert answer.status_code == 404
        assert "The dashboard is disabled" in answer.text
        assert "RELAY_ADMIN_TOKEN" in answer.text
        assert "set-cookie" not in answer.headers


def test_login_logout_and_refusals(
    make_relay: Callable[..., Relay], make_admin: Callable[[Relay], Admin]
) -> None:
    """Signed out → 303 to the login form; a wrong token → 401; the right one → a session;
    signing out (with its CSRF token) ends it. The session cookie is HttpOnly, SameSite=lax,
    scoped to /admin and not Secure on an http:// relay; pages carry the security headers."""
    relay = make_relay()
    admin = make_admin(relay)
    for path in ("/admin", "/admin/deliveries", "/admin/tasks/x", "/admin/submit"):
        answer = admin.http.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"] == f"/admin/login?next={path}"

    login_page = admin.http.get("/admin/login")
    cookie = login_page.headers["set-cookie"].lower()
    assert {"httponly", "samesite=lax", "path=/admin", "max-age=43200"} <= {
        part.strip() for part in cookie.split(";")
    }
    assert "secure" not in cookie
    csrf = csrf_of(login_page.text)
    wrong = admin.post("/admin/login", csrf, token="not-the-token")
    assert wrong.status_code == 401
    assert "That is not the admin token." in wrong.text
    assert admin.http.get("/admin").status_code == 303
    no_csrf = admin.post("/admin/login", None, token=admin.token)
    assert no_csrf.status_code == 403
    assert admin.http.get("/admin").status_code == 303

    admin.login()
    home = admin.http.get("/admin")
    assert home.status_code == 200
    headers = home.headers
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src" not in policy  # no script at all, not even same-origin
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    css = admin.http.get("/admin/static/app.css")
    assert (css.status_code, css.headers["content-type"]) == (200, "text/css; charset=utf-8")

    assert admin.post("/admin/logout", "wrong").status_code == 403
    assert admin.http.get("/admin").status_code == 200
    out = admin.post("/admin/logout", csrf_of(home.text))
    assert (out.status_code, out.headers["location"]) == (303, "/admin/login")
    assert admin.http.get("/admin").status_code == 303


def test_session_cookie_is_secure_behind_https(make_relay: Callable[..., Relay]) -> None:
    """With an https:// public URL the session cookie carries Secure, and media must be https."""
    relay = make_relay(RELAY_PUBLIC_URL="https://relay.example.com")
    answer = httpx.get(f"{relay.url}/admin/login", timeout=10)
    assert "secure" in [part.strip() for part in answer.headers["set-cookie"].lower().split(";")]
    policy = answer.headers["content-security-policy"]
    assert "media-src https:;" in policy
    assert "http:" not in policy


def test_csrf_guards_replay_and_the_form_replays_a_dead_letter(
    make_relay: Callable[..., Relay], make_admin: Callable[[Relay], Admin]
) -> None:
    """A replay POST without or with a wrong CSRF token gets 403 and replays nothing; with the
    page's token it redirects back with a message, and the dead delivery then succeeds."""
    relay = make_relay(config=FLAKY_ONCE)
    done, delivery = dead_delivery(relay)
    admin = make_admin(relay).login()
    page = admin.http.get("/admin/deliveries")
    assert page.status_code == 200
    assert "1 dead" in page.text
    assert "planned failure 1 of 1" in page.text
    action = f"/admin/deliveries/{delivery['id']}/replay"
    assert f'action="{action}"' in page.text
    signed_out = make_admin(relay).post(action, None)
    assert (signed_out.status_code, signed_out.headers["location"]) == (
        303,
        "/admin/login?next=/admin",
    )
    for csrf in (None, "", "forged-" + secrets.token_urlsafe(8)):
        refused = admin.post(action, csrf, back="/admin/deliveries")
        assert refused.status_code == 403
        assert "nothing was done" in refused.text
    time.sleep(0.3)
    assert delivery_state(relay, delivery["id"]) == "dead"

    replayed = admin.post(action, csrf_of(page.text), back="/admin/deliveries?state=dead")
    assert (replayed.status_code, replayed.headers["location"]) == (
        303,
        "/admin/deliveries?state=dead",
    )
    wait_state(relay, delivery["id"], "succeeded")
    after = admin.http.get("/admin/deliveries?state=dead")
    assert "Delivery queued again" in after.text
    assert "No deliveries match." in after.text

    # a whole event, then bulk: everything finished runs again; nothing is dead to bulk-replay
    event_action = f"/admin/events/{songs(done)[0]['id']}/replay"
    answer = admin.post(event_action, csrf_of(after.text), back=f"/admin/tasks/{done['id']}")
    assert answer.headers["location"] == f"/admin/tasks/{done['id']}"
    assert "2 deliveries queued again." in admin.http.get(answer.headers["location"]).text
    bulk = admin.post("/admin/deliveries/replay-dead", csrf_of(after.text), handler="flaky")
    assert bulk.status_code == 303
    assert "0 dead letter(s) of flaky queued again." in admin.http.get("/admin/deliveries").text


def test_pages_never_show_secrets(
    make_relay: Callable[..., Relay], make_admin: Callable[[Relay], Admin], sandbox: str
) -> None:
    """Task list, task page (with raw payloads) and deliveries hide the admin token, the API
    key, the secret key, the webhook secret, the per-task secret and the callback token, even
    when a payload carries a secret under an unknown key or inside a text."""
    shared = "shared-" + secrets.token_urlsafe(12)
    relay = make_relay(
        AIMUSIC_API_KEY="sk-live-" + secrets.token_urlsafe(12), AIMUSIC_WEBHOOK_SECRET=shared
    )
    mine = relay.wait_settled(relay.submit("velvet noir jazz", title="Velvet")["id"])
    leaked = "leak-" + secrets.token_urlsafe(10)
    body = finished_sandbox_task(sandbox, "outside job")
    body["extra"] = {"api_key": leaked, "note": f"signed with {shared}", "Authorization": leaked}
    headers, raw = signed(body, shared)
    assert httpx.post(f"{relay.url}/webhooks/aimusic", content=raw, headers=headers).status_code
    external = relay.wait_settled(body["task_id"])

    with sqlite3.connect(relay.db_path) as conn:
        [params] = conn.execute("SELECT params FROM tasks WHERE id = ?", (mine["id"],)).fetchone()
    callback_token = json.loads(params)["webhook_url"].rsplit("/", 1)[1]
    keys = relay.env["RELAY_SECRET_KEY"]
    secrets_ = {
        "admin token": relay.env["RELAY_ADMIN_TOKEN"],
        "api key": relay.env["AIMUSIC_API_KEY"],
        "secret key": keys,
        "webhook secret": shared,
        "per-task secret": CallbackTokens([keys]).task_secrets(mine["id"])[0],
        "callback token": callback_token,
        "secret in a payload": leaked,
    }
    admin = make_admin(relay).login()
    pages = {
        path: admin.http.get(path)
        for path in (
            "/admin",
            f"/admin/tasks/{mine['id']}",
            f"/admin/tasks/{external['upstream_id']}",
            "/admin/deliveries",
        )
    }
    for path, page in pages.items():
        assert page.status_code == 200, path
        for name, value in secrets_.items():
            assert value not in page.text, f"{name} shown on {path}"
    mine_page = pages[f"/admin/tasks/{mine['id']}"].text
    assert "/webhooks/aimusic/(hidden)" in mine_page
    assert "Callback body" in mine_page and "Velvet" in mine_page
    external_page = pages[f"/admin/tasks/{external['upstream_id']}"].text
    assert "&#34;api_key&#34;: &#34;…&#34;" in external_page
    assert "signed with …" in external_page
    assert "<audio controls" in external_page  # a task the relay did not submit plays too


def test_submit_form_creates_a_task_or_explains_the_refusal(
    make_relay: Callable[..., Relay], make_admin: Callable[[Relay], Admin]
) -> None:
    """The form submits like the API and lands on the task page; a bad field is a 400 with the
    fix, and an out-of-credits upstream a readable 402 — never a 500."""
    with run_asgi(create_sandbox_app(SandboxOptions(delay_s=0.3, credits=0))) as broke:
        relay = make_relay(AIMUSIC_BASE_URL=broke)
        admin = make_admin(relay).login()
        csrf = admin.csrf("/admin/submit")
        empty = admin.post("/admin/submit", csrf, prompt="  ", title="x")
        assert empty.status_code == 400
        assert "Prompt: describe the song" in empty.text
        labels = admin.post("/admin/submit", csrf, prompt="lofi", labels="team")
        assert labels.status_code == 400
        assert "write “team” as key=value" in labels.text
        poor = admin.post("/admin/submit", csrf, prompt="lofi beats", title="Broke")
        assert poor.status_code == 402
        assert "out of credits" in poor.text
        assert ">lofi beats</textarea>" in poor.text  # what was typed is kept

    relay = make_relay()
    admin = make_admin(relay).login()
    created = admin.post(
        "/admin/submit",
        admin.csrf("/admin/submit"),
        prompt="sunlit indie pop",
        title="Paper Planes",
        labels="team=ads, mood=bright",
        instrumental="on",
        family="producer",
    )
    assert created.status_code == 303
    task_path = created.headers["location"]
    assert task_path.startswith("/admin/tasks/")
    done = relay.wait_settled(task_path.rsplit("/", 1)[1])
    assert done["labels"] == {"team": "ads", "mood": "bright"}
    assert done["params"]["make_instrumental"] is True
    page = admin.http.get(task_path).text
    assert "Submitted; the task is submitted." in page
    assert "Paper Planes" in page and "<audio controls" in page
    assert admin.http.get("/admin/tasks/no-such-task").status_code == 404


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_dashboard_queries_on_both_backends(
    backend: str, tmp_path: Path, make_pg_url: Callable[[], str]
) -> None:
    """The two reads the dashboard adds — raw inbound bodies and events by task or id — return
    the stored bytes and rows on SQLite and PostgreSQL alike."""
    url = f"sqlite:///{tmp_path / 'dash.db'}" if backend == "sqlite" else make_pg_url()
    store = open_store(url)
    await store.open()
    try:
        await store.create_task(
            NewTask("ref-1", "producer", "producer", "p", {}, {}, None, next_poll_at=None)
        )
        await store.task_submitted("ref-1", "up-1")
        body = b'{"task_id": "up-1", "webhook_secret": "s3cret"}'
        inbound = Inbound(
            source="callback",
            body=body,
            platform="producer",
            clips=[("song.completed", "clip-1", {"title": "Night Drive"})],
            task_id="up-1",
            task_ref="ref-1",  # on the task's own URL: the shared route may not touch it
            webhook_id="w1",
        )
        result = await store.record_inbound(inbound, lambda *_: [])
        [row] = await store.reads.inbox_bodies("up-1")
        assert (row.body, row.source) == (body, "callback")
        by_task = await store.reads.events_for(task_refs=["ref-1", "unknown"])
        by_id = await store.reads.events_for(ids=list(result.event_ids))
        assert [e.clip["title"] for e in by_task] == ["Night Drive"]
        assert [e.id for e in by_id] == list(result.event_ids)
        assert await store.reads.events_for(task_refs=[]) == []
    finally:
        await store.close()


def test_redactor_hides_by_key_name_value_and_url() -> None:
    """Secret-named keys, known values, callback tokens and secret query parameters go."""
    redactor = Redactor(["hunter2-secret"])
    shown = redactor.value(
        {
            "webhook_secret": "abc",
            "X-Api-Key": "k",
            "nested": [{"password": "p", "note": "uses hunter2-secret here"}],
            "webhook_url": "https://relay.example/webhooks/aimusic/eyJ0.abc-def?x=1",
            "download": "https://cdn.example/a.mp3?token=t0k&size=2",
            "empty_token": "",
            "title": "Keys of the Kingdom",
        }
    )
    assert shown == {
        "webhook_secret": HIDDEN,
        "X-Api-Key": HIDDEN,
        "nested": [{"password": HIDDEN, "note": f"uses {HIDDEN} here"}],
        "webhook_url": "https://relay.example/webhooks/aimusic/(hidden)?x=1",
        "download": f"https://cdn.example/a.mp3?token={HIDDEN}&size=2",
        "empty_token": "",
        "title": "Keys of the Kingdom",
    }
    assert redactor.pretty(b"not json hunter2-secret") == f"not json {HIDDEN}"
    signed_media = "https://cdn.example/a.mp3?X-Amz-Signature=abc"
    assert redactor.text(signed_media) == signed_media  # still plays in <audio>
    assert redactor.pretty(signed_media) == f"https://cdn.example/a.mp3?X-Amz-Signature={HIDDEN}"


TASK_LINK = re.compile(r'class="task-title" href="/admin/tasks/([0-9a-f]+)"')
LYRICS = "[Verse]\nGolden light across the water\n[Chorus]\nStay a little longer"
COPIES = (
    '[[handlers]]\nname = "archive"\ntype = "disk"\npath = "{workdir}/songs"\n'
    '[[handlers]]\nname = "copies"\ntype = "tests.plugins:RecorderHandler"\n'
    'log_file = "{workdir}/copies.jsonl"\nevents = ["task.submitted", "song.completed"]\n'
)
"""`archive` files each song on disk; `copies` records a URL per song, and also takes the
relay's own `task.submitted` event (whose clip has no title)."""


def listed(admin: Admin, **query: str) -> set[str]:
    """The task ids the task list shows for `query`."""
    page = admin.http.get("/admin", params=query)
    assert page.status_code == 200, page.text
    return set(TASK_LINK.findall(page.text))


def test_task_list_filters_and_search(
    make_relay: Callable[..., Relay], make_admin: Callable[[Relay], Admin]
) -> None:
    """The GET form filters by state, family and label and searches titles and prompts
    (case-insensitively, `%` and `_` taken literally); a bad filter is a 400 naming the field."""
    relay = make_relay()
    night = relay.submit(
        "warm synthwave, night highway", title="Night Drive", labels={"team": "radio"}
    )
    golden = relay.submit(
        "dreamy bossa nova",
        title="Golden Hour",
        family="sonic",
        lyrics=LYRICS,
        labels={"team": "ads"},
    )
    failed = relay.submit("distorted hardcore #fail", title="Static Bloom", labels={"team": "ads"})
    for task in (night, golden, failed):
        relay.wait_settled(task["id"])
    admin = make_admin(relay).login()

    home = admin.http.get("/admin").text
    assert '<form method="get" action="/admin"' in home
    for field in ('name="state"', 'name="family"', 'name="label"', 'name="q"'):
        assert field in home
    assert {night["id"], golden["id"], failed["id"]} == listed(admin)
    assert {failed["id"]} == listed(admin, state="failed")
    assert {golden["id"]} == listed(admin, family="sonic")
    assert {golden["id"], failed["id"]} == listed(admin, label="team=ads")
    assert {failed["id"]} == listed(admin, label="team=ads", family="producer", state="failed")
    assert {night["id"]} == listed(admin, q="SYNTHWAVE")  # the prompt
    assert {golden["id"]} == listed(admin, q="golden h")  # the title
    assert set() == listed(admin, q="%")
    assert set() == listed(admin, label="team=nobody")
    kept = admin.http.get("/admin", params={"state": "failed", "q": "static"}).text
    assert '<option value="failed" selected>' in kept
    assert 'name="q" value="static"' in kept

    for query, says in (
        ({"label": "team"}, "Labels: write “team” as key=value"),
        ({"state": "bogus"}, "State: choose one of"),
        ({"family": "nuro2"}, "Family: choose one of"),
    ):
        refused = admin.http.get("/admin", params=query)
        assert refused.status_code == 400, query
        assert says in refused.text


def test_task_page_shows_lyrics_copies_and_a_safe_download(
    make_relay: Callable[..., Relay], make_admin: Callable[[Relay], Admin]
) -> None:
    """A task's page shows the lyrics and where each copy landed (the disk path, the other
    handler's URL); the disk copy downloads through the relay, but only a file inside the disk
    handler's directory: a stored path outside it, a `..` path, a symlink out, another handler's
    delivery or another task's id are all 404 and serve nothing."""
    relay = make_relay(config=COPIES)
    done = relay.wait_settled(
        relay.submit("warm synthwave", title="Night Drive", lyrics=LYRICS)["id"]
    )
    other = relay.wait_settled(relay.submit("second song", title="Second")["id"])
    [song] = songs(done)
    archive = next(d for d in song["deliveries"] if d["handler"] == "archive")
    copies = next(d for d in song["deliveries"] if d["handler"] == "copies")
    audio = Path(archive["result"]["path"])
    assert audio.is_file() and relay.songs in audio.parents
    admin = make_admin(relay).login()

    page = admin.http.get(f"/admin/tasks/{done['id']}").text
    assert '<pre class="lyrics">[Verse]\nGolden light across the water\n[Chorus]' in page
    assert str(audio) in page
    assert f'href="{copies["result"]["url"]}"' in page
    download = f"/admin/tasks/{done['id']}/download/{archive['id']}"
    assert f'href="{download}"' in page

    signed_out = make_admin(relay).http.get(download)
    assert signed_out.status_code == 303
    got = admin.http.get(download)
    assert got.status_code == 200, got.text
    assert got.content == audio.read_bytes()
    assert got.headers["content-disposition"].startswith("attachment")
    assert audio.name in got.headers["content-disposition"]

    wrong_task = admin.http.get(f"/admin/tasks/{other['id']}/download/{archive['id']}")
    assert wrong_task.status_code == 404
    not_disk = admin.http.get(f"/admin/tasks/{done['id']}/download/{copies['id']}")
    assert not_disk.status_code == 404
    assert admin.http.get(f"/admin/tasks/{done['id']}/download/nope").status_code == 404

    secret_file = relay.workdir / "relay.toml"
    link = relay.songs / "escape.wav"
    link.symlink_to(secret_file)
    for stored in (
        str(secret_file),
        f"{relay.songs}/../relay.toml",
        str(link),
        str(relay.songs),
        "relay.toml",
    ):
        with sqlite3.connect(relay.db_path) as conn:
            conn.execute(
                "UPDATE deliveries SET result = ? WHERE id = ?",
                (json.dumps({"path": stored}), archive["id"]),
            )
        refused = admin.http.get(download)
        assert refused.status_code == 404, stored
        assert secret_file.read_text() not in refused.text
        assert f'href="{download}"' not in admin.http.get(f"/admin/tasks/{done['id']}").text


def test_deliveries_page_labels_song_links_with_the_title(
    make_relay: Callable[..., Relay], make_admin: Callable[[Relay], Admin]
) -> None:
    """Every song link on the deliveries page reads as the song's title, also for the relay's
    own `task.submitted` event whose clip has none — never as an event kind."""
    relay = make_relay(config=COPIES)
    done = relay.wait_settled(relay.submit("quiet harbour lullaby")["id"])
    [song] = songs(done)
    title = song["clip"]["title"]
    assert title
    admin = make_admin(relay).login()
    page = admin.http.get("/admin/deliveries").text
    links = re.findall(rf'<a href="/admin/tasks/{done["id"]}">([^<]*)</a>', page)
    assert relay.count("deliveries") == 3  # archive and copies for the song, copies for submitted
    assert [title] * 3 == links


def test_landings_say_where_each_copy_went() -> None:
    """Each handler's stored result becomes readable lines: a disk path, an S3 URL (linked
    only when it is http(s)), a Slack permalink or channel; secrets in a result stay hidden."""
    from receiver.dashboard.views import landings

    redactor = Redactor(["hunter2-secret"])
    shown = {
        name: [(item.label, item.text, item.href) for item in landings(result, redactor)]
        for name, result in {
            "disk": {
                "path": "/srv/songs/a.m4a",
                "cover": None,
                "metadata": "/srv/songs/a.json",
                "lyrics": "/srv/songs/a.txt",
            },
            "s3": {"bucket": "b", "key": "k.m4a", "url": "s3://b/k.m4a", "size": 3},
            "presigned": {"url": "https://b.s3.example/k.m4a?X-Amz-Signature=abc"},
            "slack": {
                "channel": "C1",
                "ts": "1.5",
                "permalink": "https://t.slack.com/archives/C1/p15",
            },
            "slack-bot": {"channel": "C1", "ts": "1.5", "event": "song.completed"},
            "odd": {"note": "uses hunter2-secret", "api_key": "k"},
            "none": None,
        }.items()
    }
    assert shown["disk"] == [
        ("File", "/srv/songs/a.m4a", None),
        ("Lyrics", "/srv/songs/a.txt", None),
        ("Metadata", "/srv/songs/a.json", None),
    ]
    assert shown["s3"] == [("URL", "s3://b/k.m4a", None)]
    presigned = "https://b.s3.example/k.m4a?X-Amz-Signature=abc"
    assert shown["presigned"] == [("URL", presigned, presigned)]
    permalink = "https://t.slack.com/archives/C1/p15"
    assert shown["slack"] == [("Message", permalink, permalink)]
    assert shown["slack-bot"] == [("Message", "channel C1 · ts 1.5", None)]
    assert shown["odd"] == [("note", f"uses {HIDDEN}", None), ("api_key", HIDDEN, None)]
    assert shown["none"] == []
