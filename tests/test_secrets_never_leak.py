"""No secret, and nothing derived from one, appears anywhere a person or a script can read.

One full run with every secret set to a distinctive value and debug logging in JSON: songs
delivered to disk, Slack (bot token), S3 (explicit keys) and a forward target, a failed song,
a handler failing for good, a badly signed callback, refused admin calls, an upstream error.
Then every surface is searched for every secret. To cover a new surface (a page, a CLI verb,
an endpoint), add it to `surfaces()`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import boto3
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.sandbox import create_sandbox_app
from receiver.sandbox.slack import SlackCatcher
from receiver.signing import CallbackTokens
from tests.conftest import FAST_SANDBOX, Relay, signed, songs
from tests.servers import run_asgi

pytestmark = pytest.mark.slow


def _secret(kind: str) -> str:
    return f"{kind}-LEAKCHECK-{secrets.token_hex(8)}"


SECRETS = {
    "AIMUSIC_API_KEY": _secret("apikey"),
    "AIMUSIC_WEBHOOK_SECRET": _secret("whsec"),
    "RELAY_SECRET_KEY": _secret("relaykey"),
    "RELAY_ADMIN_TOKEN": _secret("admintoken"),
    "SLACK_TOKEN": "xoxb-" + _secret("slack"),
    "S3_SECRET": _secret("s3secret"),
    "FORWARD_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
}
"""Every secret the relay holds, each set to a value no real output would contain by chance."""


@dataclass
class Catcher:
    """A forward target on loopback: `/ok` answers 200, `/refuse` 403; bodies are recorded."""

    url: str = ""
    bodies: list[str] = field(default_factory=list)

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            self.bodies.append((await request.body()).decode(errors="replace"))
            if request.url.path == "/refuse":
                return JSONResponse({"error": "no"}, status_code=403)
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/{path}", receive, methods=["POST"])])


@pytest.fixture(scope="module")
def keyed_sandbox() -> Iterator[str]:
    """The upstream emulator accepting only our distinctive API key."""
    options = dataclasses.replace(FAST_SANDBOX, api_key=SECRETS["AIMUSIC_API_KEY"])
    with run_asgi(create_sandbox_app(options)) as url:
        yield url


@pytest.fixture(scope="module")
def slack() -> Iterator[tuple[SlackCatcher, str]]:
    catcher = SlackCatcher(SECRETS["SLACK_TOKEN"])
    with run_asgi(catcher.app) as url:
        yield catcher, url


@pytest.fixture(scope="module")
def forward_target() -> Iterator[Catcher]:
    catcher = Catcher()
    with run_asgi(catcher.app()) as url:
        catcher.url = url
        yield catcher


CONFIG = """
[[handlers]]
name = "archive"
type = "disk"
path = "{{workdir}}/songs"

[[handlers]]
name = "team-chat"
type = "slack"
token = "${{SLACK_TOKEN}}"
channel = "#music"
api_base_url = "{slack}/api/"

[[handlers]]
name = "bucket"
type = "s3"
bucket = "leakcheck"
endpoint_url = "{s3}"
region = "us-east-1"
access_key_id = "AKIALEAKCHECKEXAMPLE"
secret_access_key = "${{S3_SECRET}}"

[[handlers]]
name = "downstream"
type = "forward"
url = "{forward}/ok"
secret = "${{FORWARD_SECRET}}"

[[handlers]]
name = "refused-forward"
type = "forward"
url = "{forward}/refuse"
secret = "${{FORWARD_SECRET}}"
"""


@dataclass
class Run:
    """What one full run left behind: the relay and every answer collected along the way."""

    relay: Relay
    collected: dict[str, str]
    task_refs: list[str]


def cli(relay: Relay, *args: str) -> str:
    """Run `aimusic-relay <args>` with the relay's environment; its stdout and stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        env={**relay.env, "PATH": "/usr/bin:/bin", "NO_COLOR": "1", "COLUMNS": "200"},
        cwd=relay.workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


def admin_pages(relay: Relay, task_refs: list[str]) -> dict[str, str]:
    """Every dashboard page after a real login (none when there is no dashboard)."""
    with httpx.Client(base_url=relay.url, timeout=15) as browser:
        form = browser.get("/admin/login")
        if form.status_code == 404:
            return {}
        pages = {"GET /admin/login": form.text}
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf, form.text[:2000]
        wrong = browser.post("/admin/login", data={"csrf": csrf[1], "token": "not-it"})
        pages["POST /admin/login (wrong token)"] = wrong.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', wrong.text) or csrf
        token = SECRETS["RELAY_ADMIN_TOKEN"]
        browser.post("/admin/login", data={"csrf": csrf[1], "token": token, "next": "/admin"})
        paths = ["/admin", "/admin/deliveries", "/admin/submit"]
        paths += [f"/admin/tasks/{ref}" for ref in task_refs]
        for path in paths:
            answer = browser.get(path)
            assert answer.status_code == 200, (path, answer.status_code)
            pages[f"GET {path}"] = answer.text
        return pages


def surfaces(run: Run, slack: SlackCatcher, forward: Catcher) -> dict[str, str]:
    """Everything readable after the run, by name. Extend this list for new surfaces."""
    relay = run.relay
    api = {f"GET {path}": path for path in ("/api/tasks", "/api/events", "/api/deliveries")}
    api |= {f"GET /api/tasks/{ref}": f"/api/tasks/{ref}" for ref in run.task_refs}
    found = {
        name: httpx.get(relay.url + path, headers=relay.admin, timeout=15).text
        for name, path in api.items()
    }
    found |= run.collected
    found["relay log"] = relay.log()
    found |= {
        f"cli {' '.join(args)}": cli(relay, *args)
        for args in [
            ("handlers", "--json"),
            ("credits", "--json"),
            ("submit", "--json", "from the command line"),
            ("tasks", "--json"),
            ("events", "--json"),
            ("dead-letters", "--json"),
            ("doctor", "--json"),
        ]
    }
    found |= admin_pages(relay, run.task_refs)
    found["slack messages"] = json.dumps([r.body for r in slack.requests])
    found["forwarded bodies"] = "\n".join(forward.bodies)
    return found


@pytest.fixture
def full_run(
    make_relay: Callable[..., Relay],
    keyed_sandbox: str,
    slack: tuple[SlackCatcher, str],
    forward_target: Catcher,
    moto_s3: str,
) -> Run:
    boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1").create_bucket(
        Bucket="leakcheck"
    )
    config = CONFIG.format(slack=slack[1], s3=moto_s3, forward=forward_target.url)
    relay = make_relay(
        config=config,
        AIMUSIC_BASE_URL=keyed_sandbox,
        RELAY_LOG_LEVEL="debug",
        RELAY_LOG_FORMAT="json",
        **SECRETS,
    )
    collected: dict[str, str] = {}

    def keep(name: str, answer: httpx.Response) -> httpx.Response:
        collected[name] = f"{answer.status_code} {dict(answer.headers)} {answer.text}"
        return answer

    done = [relay.wait_settled(relay.submit(p, title="Leak check")["id"]) for p in ("calm", "x")]
    failed = relay.wait_settled(relay.submit("doomed #fail")["id"])
    assert {"succeeded", "failed"} == {done[0]["state"], failed["state"]}
    deliveries = {d["handler"]: d for e in songs(done[0]) for d in e["deliveries"]}
    assert "dead" == deliveries["refused-forward"]["state"]  # a handler failing for good
    assert "succeeded" == deliveries["bucket"]["state"]

    url = f"{relay.url}/webhooks/aimusic"
    headers, raw = signed({"task_id": "t", "data": []}, "not-the-secret")
    keep("POST /webhooks/aimusic (bad signature)", httpx.post(url, content=raw, headers=headers))
    token = CallbackTokens([SECRETS["RELAY_SECRET_KEY"]]).dumps(done[0]["id"])
    answer = httpx.post(f"{url}/{token}", content=raw, headers=headers)
    keep("POST /webhooks/aimusic/{token} (bad signature)", answer)
    for name, auth in [("none", {}), ("wrong", {"Authorization": "Bearer nope"})]:
        keep(f"GET /api/tasks ({name} token)", httpx.get(f"{relay.url}/api/tasks", headers=auth))
    upstream_error = httpx.post(
        f"{relay.url}/api/tasks",
        json={"params": {"sound": "too long a title", "title": "t" * 300}},
        headers=relay.admin,
        timeout=15,
    )
    assert 400 <= keep("POST /api/tasks (upstream refuses)", upstream_error).status_code < 500
    tasks = httpx.get(f"{relay.url}/api/tasks", headers=relay.admin, timeout=15).json()
    rows = tasks.get("items", tasks) if isinstance(tasks, dict) else tasks
    return Run(relay=relay, collected=collected, task_refs=[str(t["id"]) for t in rows])


def test_no_secret_or_derived_secret_appears_on_any_surface(
    full_run: Run, slack: tuple[SlackCatcher, str], forward_target: Catcher
) -> None:
    """Searched: the debug JSON log, every error body, /api/* answers, the CLI's --json
    output, the dashboard pages, and what Slack and the forward target received."""
    tokens = CallbackTokens([SECRETS["RELAY_SECRET_KEY"]])
    needles = dict(SECRETS)
    for ref in full_run.task_refs:
        needles[f"task secret of {ref}"] = tokens.task_secrets(ref)[0]
    found = surfaces(full_run, slack[0], forward_target)
    assert len(full_run.task_refs) >= 4
    assert '"level": "debug"' in found["relay log"]  # the most talkative logging was on
    # the secrets were really in use (the songs needed the API key, so did this Slack call)
    bearer = f"Bearer {SECRETS['SLACK_TOKEN']}"
    assert any(r.headers.get("authorization") == bearer for r in slack[0].requests)
    leaks = [
        f"{needle} in {surface}"
        for surface, text in found.items()
        for needle, value in needles.items()
        if value in text
    ]
    assert [] == leaks
