"""`aimusic-relay doctor` against real parts: the sandbox (its key check), a running relay (the
public URL), the Slack catcher (`auth.test`), moto's S3 (`HeadBucket`), a disk directory, and
a database that answers or does not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from receiver.sandbox import SandboxOptions, create_sandbox_app
from receiver.sandbox.slack import SlackCatcher
from tests.conftest import FAST_SANDBOX, Relay
from tests.s3_server import FAKE_CREDENTIALS
from tests.servers import free_port, run_asgi

pytestmark = pytest.mark.slow

BOT_TOKEN = "xoxb-doctor-right-token"
WRONG_BOT_TOKEN = "xoxb-doctor-wrong-token"
HOOK_TOKEN = "hooktoken0123456789ABCD"
FORWARD_PATH_TOKEN = "path-token-98765"
WEBHOOK_SECRET = "shared-webhook-secret-4321"

CONFIG = """
[[handlers]]
name = "archive"
type = "disk"
path = "{{workdir}}/songs"

[[handlers]]
name = "chat"
type = "slack"
token = "${{DOCTOR_SLACK_TOKEN}}"
channel = "#music"
api_base_url = "{slack}/api/"

[[handlers]]
name = "hook"
type = "slack"
webhook_url = "https://hooks.slack.com/services/T0AAA/B0BBB/{hook}"

[[handlers]]
name = "bucket"
type = "s3"
bucket = "${{DOCTOR_BUCKET}}"
endpoint_url = "{s3}"

[[handlers]]
name = "relay-on"
type = "forward"
url = "https://example.com/in/{path_token}"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[[handlers]]
name = "notify"
type = "apprise"
urls = ["json://localhost/notify"]
"""


@pytest.fixture(scope="module")
def slack() -> Iterator[str]:
    """The Slack catcher, accepting only BOT_TOKEN; yields its base URL."""
    catcher = SlackCatcher(token=BOT_TOKEN)
    with run_asgi(catcher.app) as url:
        yield url


@pytest.fixture
def doctor_relay(
    make_relay: Callable[..., Relay], slack: str, moto_s3: str
) -> Callable[..., Relay]:
    """A running relay whose relay.toml has one handler of every built-in type."""
    boto3.client("s3", endpoint_url=moto_s3).create_bucket(Bucket="doctor-songs")
    config = CONFIG.format(slack=slack, s3=moto_s3, hook=HOOK_TOKEN, path_token=FORWARD_PATH_TOKEN)

    def make(**env: str) -> Relay:
        defaults = {
            "DOCTOR_SLACK_TOKEN": BOT_TOKEN,
            "DOCTOR_BUCKET": "doctor-songs",
            "AIMUSIC_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
        return make_relay(config=config, **{**defaults, **env})

    return make


def _doctor(relay: Relay, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", "doctor", *args],
        env={**os.environ, **relay.env, "COLUMNS": "250", **env},
        cwd=relay.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _by_name(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    report = json.loads(done.stdout)
    return {check["name"]: check for check in report["checks"]}


def _secrets(relay: Relay) -> list[str]:
    return [
        relay.env["AIMUSIC_API_KEY"],
        relay.env["RELAY_ADMIN_TOKEN"],
        relay.env["RELAY_SECRET_KEY"],
        BOT_TOKEN,
        WRONG_BOT_TOKEN,
        HOOK_TOKEN,
        FORWARD_PATH_TOKEN,
        WEBHOOK_SECRET,
        FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ]


def test_good_configuration_is_all_ok(doctor_relay: Callable[..., Relay]) -> None:
    """Sandbox key, Slack bot token, existing bucket, writable disk, reachable relay: every
    check is ok and doctor exits 0, printing no secret."""
    relay = doctor_relay()
    done = _doctor(relay, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    checks = _by_name(done)
    not_ok = {name: c for name, c in checks.items() if c["status"] != "ok"}
    assert {} == not_ok
    expected = {"settings", "handlers", "database", "upstream key", "public URL"}
    assert expected | {f"handler {n}" for n in ("archive", "chat", "hook", "bucket")} <= set(checks)
    assert "credits" in checks["upstream key"]["detail"]
    assert "auth.test" in checks["handler chat"]["detail"]
    assert "not sent" in checks["handler hook"]["detail"]
    assert "doctor-songs" in checks["handler bucket"]["detail"]
    assert "callbacks on" in checks["public URL"]["detail"]
    for secret in _secrets(relay):
        assert secret not in done.stdout + done.stderr


def test_broken_configuration_names_each_failure(
    doctor_relay: Callable[..., Relay], slack: str
) -> None:
    """Wrong API key (a sandbox started with its own key), missing bucket, refused Slack token,
    unreachable database: doctor exits 1, names each failure with advice, prints no secret —
    as a table for people and as JSON for scripts."""
    relay = doctor_relay(DOCTOR_SLACK_TOKEN=WRONG_BOT_TOKEN, DOCTOR_BUCKET="no-such-bucket")
    picky = SandboxOptions(**{**_options(FAST_SANDBOX), "api_key": "the-only-right-key"})
    with run_asgi(create_sandbox_app(picky)) as picky_sandbox:
        broken = {
            "AIMUSIC_BASE_URL": picky_sandbox,
            "DATABASE_URL": f"postgresql://root@127.0.0.1:{free_port()}/test",
            "RELAY_PUBLIC_URL": f"http://127.0.0.1:{free_port()}",
        }
        done = _doctor(relay, "--json", **broken)
        human = _doctor(relay, **broken)
    assert 1 == done.returncode, done.stderr
    checks = _by_name(done)
    failed = {name for name, c in checks.items() if c["status"] == "fail"}
    assert {"database", "upstream key", "handler chat", "handler bucket"} == failed
    assert "AIMUSIC_API_KEY is wrong" in checks["upstream key"]["detail"]
    assert "check DATABASE_URL" in checks["database"]["advice"]
    assert "invalid_auth" in checks["handler chat"]["detail"]
    assert "does not exist" in checks["handler bucket"]["detail"]
    assert "warn" == checks["public URL"]["status"]
    assert all(checks[name]["advice"] for name in failed)

    assert 1 == human.returncode
    assert "4 failed" in human.stderr
    for name in ("database", "upstream key", "handler chat", "handler bucket"):
        assert name in human.stdout
    for secret in [*_secrets(relay), "the-only-right-key"]:
        assert secret not in done.stdout + done.stderr + human.stdout + human.stderr


def test_settings_error_is_a_failed_check(make_relay: Callable[..., Relay]) -> None:
    """A malformed environment variable is reported as a failed `settings` check, not a crash,
    and the password inside a bad DATABASE_URL is not shown."""
    relay = make_relay(start=False)
    done = _doctor(relay, "--json", DATABASE_URL="mysql://relay:hunter2-password@db/songs")
    assert 1 == done.returncode
    [check] = json.loads(done.stdout)["checks"]
    assert ("settings", "fail") == (check["name"], check["status"])
    assert "DATABASE_URL" in check["detail"] and "postgresql://" in check["detail"]
    assert "hunter2-password" not in done.stdout + done.stderr


def _options(options: SandboxOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in options.__dataclass_fields__}
