"""Sharp edges of `/api/*` on a real relay: JSON for every refusal (unknown path, wrong method,
unknown handler or query parameter), and the callback token kept out of every answer."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys

import httpx
import pytest

from tests.conftest import Relay

pytestmark = pytest.mark.slow

ROUTES = [
    ("GET", "/api/tasks"),
    ("POST", "/api/tasks"),
    ("GET", "/api/tasks/some-id"),
    ("GET", "/api/events"),
    ("GET", "/api/deliveries"),
    ("POST", "/api/deliveries/replay-dead"),
    ("POST", "/api/deliveries/some-id/replay"),
    ("POST", "/api/events/some-id/replay"),
    ("GET", "/api/credits"),
    ("GET", "/api/openapi.json"),
]
"""Every `/api` operation, with made-up ids where the path has one."""


def _cli(relay: Relay, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        env={**os.environ, **relay.env},
        cwd=relay.workdir,
        capture_output=True,
        text=True,
        timeout=90,
    )


def _callback_token(relay: Relay, task_id: str) -> str:
    """The signed token in the callback URL the relay stored (and sent upstream) for a task."""
    with sqlite3.connect(relay.db_path) as conn:
        [params] = conn.execute("SELECT params FROM tasks WHERE id = ?", (task_id,)).fetchone()
    url = str(json.loads(params)["webhook_url"])
    token = url.rsplit("/webhooks/aimusic/", 1)[1]
    assert len(token) > 20
    return token


def _dashboard(relay: Relay, path: str) -> str:
    """A dashboard page's HTML, signed in with the admin token."""
    with httpx.Client(base_url=relay.url, timeout=15) as browser:
        login = browser.get("/admin/login").text
        found = re.search(r'name="csrf" value="([^"]+)"', login)
        assert found, "the login page has no CSRF field"
        token = relay.env["RELAY_ADMIN_TOKEN"]
        signed_in = browser.post(
            "/admin/login", data={"csrf": found.group(1), "token": token, "next": "/admin"}
        )
        assert 303 == signed_in.status_code
        page = browser.get(path)
        assert 200 == page.status_code, page.text
        return page.text


def test_callback_token_never_leaves_the_relay(relay: Relay) -> None:
    """Submitted by API and by CLI, a task's callback token appears in no API answer, no CLI
    output and no dashboard page; each shows `/webhooks/aimusic/(hidden)` instead, and the
    provider still calls back on the real URL (the song is delivered)."""
    answer = httpx.post(
        f"{relay.url}/api/tasks",
        json={"params": {"sound": "token hunt"}},
        headers=relay.admin,
        timeout=15,
    )
    assert 202 == answer.status_code, answer.text
    by_api = answer.json()["id"]
    cli_submit = _cli(relay, "submit", "token hunt by cli", "--json")
    assert 0 == cli_submit.returncode, cli_submit.stderr
    by_cli = json.loads(cli_submit.stdout)["id"]
    tokens = {_callback_token(relay, by_api), _callback_token(relay, by_cli)}
    relay.wait_settled(by_api)
    relay.wait_settled(by_cli)

    def get(path: str) -> str:
        shown = httpx.get(f"{relay.url}{path}", headers=relay.admin, timeout=15)
        assert 200 == shown.status_code, shown.text
        return shown.text

    seen = {
        "POST /api/tasks": answer.text,
        "submit --json": cli_submit.stdout + cli_submit.stderr,
        "GET /api/tasks": get("/api/tasks"),
        "GET /api/tasks/{id}": get(f"/api/tasks/{by_api}") + get(f"/api/tasks/{by_cli}"),
        "GET /api/events": get("/api/events"),
        "GET /api/deliveries": get("/api/deliveries"),
        "tasks --json": _cli(relay, "tasks", "--json").stdout,
        "tasks": _cli(relay, "tasks").stdout,
        "events --json": _cli(relay, "events", "--json").stdout,
        "dashboard task": _dashboard(relay, f"/admin/tasks/{by_api}"),
        "dashboard list": _dashboard(relay, "/admin"),
    }
    for where, text in seen.items():
        for token in tokens:
            assert token not in text, f"callback token shown by {where}"
    for where in ("POST /api/tasks", "submit --json", "GET /api/tasks", "dashboard task"):
        assert "/webhooks/aimusic/(hidden)" in seen[where], where


def test_unknown_api_path_is_a_json_404(relay: Relay) -> None:
    """An unknown `/api` path answers 404 `not_found` as JSON, with or without the token."""
    for path in ("/api/nope", "/api/tasks/x/y", "/api"):
        for headers in (relay.admin, {}):
            answer = httpx.get(f"{relay.url}{path}", headers=headers)
            assert (404, "application/json") == (
                answer.status_code,
                answer.headers["content-type"],
            ), path
            body = answer.json()
            assert {"error", "detail"} == set(body) and "not_found" == body["error"]
            assert path in body["detail"]


def test_wrong_method_on_api_is_a_json_405_with_allow(relay: Relay) -> None:
    """A method a route does not serve answers 405 `method_not_allowed` as JSON, naming the
    methods it does serve in `Allow` and in the detail."""
    for method, path, allowed in (
        ("DELETE", "/api/tasks", {"GET", "POST"}),
        ("POST", "/api/credits", {"GET"}),
        ("GET", "/api/deliveries/replay-dead", {"POST"}),
        ("PUT", "/api/tasks/some-id", {"GET"}),
    ):
        answer = httpx.request(method, f"{relay.url}{path}", headers=relay.admin)
        assert 405 == answer.status_code, (method, path)
        assert {"error": "method_not_allowed"} == {"error": answer.json()["error"]}
        offered = {m.strip() for m in answer.headers["allow"].split(",")}
        assert allowed <= offered, (method, path)
        assert all(m in answer.json()["detail"] for m in allowed)


def test_paths_outside_api_keep_their_answers(relay: Relay) -> None:
    """Outside `/api`, an unknown path or a wrong method is answered as before (plain text)."""
    missing = httpx.get(f"{relay.url}/nope")
    assert (404, "Not Found") == (missing.status_code, missing.text)
    wrong = httpx.post(f"{relay.url}/healthz")
    assert (405, "Method Not Allowed") == (wrong.status_code, wrong.text)
    assert "GET" in wrong.headers["allow"]


def test_unknown_handler_is_a_400_naming_it(relay: Relay) -> None:
    """A handler filter naming no configured handler is a 400 naming it and the configured
    ones, for listing and for bulk replay; a configured one is accepted."""
    for method, path in (("GET", "/api/deliveries"), ("POST", "/api/deliveries/replay-dead")):
        answer = httpx.request(
            method, f"{relay.url}{path}", params={"handler": "nope"}, headers=relay.admin
        )
        assert (400, "bad_request") == (answer.status_code, answer.json()["error"]), path
        detail = answer.json()["detail"]
        assert detail.startswith("handler: ") and "'nope'" in detail and "disk" in detail
        known = httpx.request(
            method, f"{relay.url}{path}", params={"handler": "disk"}, headers=relay.admin
        )
        assert known.status_code in (200, 202), known.text


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_unknown_query_parameter_is_a_400_naming_it(relay: Relay, method: str, path: str) -> None:
    """`?bogus=1` on any `/api` route is a 400 whose detail starts with `bogus`; nothing is
    created or replayed."""
    answer = httpx.request(
        method,
        f"{relay.url}{path}",
        params={"bogus": "1"},
        headers=relay.admin,
        json={"params": {"sound": "never sent"}} if method == "POST" else None,
    )
    assert (400, "bad_request") == (answer.status_code, answer.json()["error"]), answer.text
    assert answer.json()["detail"].startswith("bogus: ")
    assert 0 == relay.count("tasks")


def test_known_query_parameters_still_work(relay: Relay) -> None:
    """Documented parameters pass the check (paging, filters, repeated labels)."""
    tasks = httpx.get(
        f"{relay.url}/api/tasks",
        params=[("limit", "5"), ("offset", "0"), ("label", "a:b"), ("label", "c:d")],
        headers=relay.admin,
    )
    assert (200, []) == (tasks.status_code, tasks.json())
    events = httpx.get(
        f"{relay.url}/api/events",
        params={"kind": "song.completed", "task": "x"},
        headers=relay.admin,
    )
    assert (200, []) == (events.status_code, events.json())
    replay = httpx.post(
        f"{relay.url}/api/deliveries/replay-dead", params={"since": "0"}, headers=relay.admin
    )
    assert (202, {"replayed": 0}) == (replay.status_code, replay.json())
