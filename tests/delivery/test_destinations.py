"""Issue-4 acceptance: disk + Slack + S3 on one relay, the callback arriving three times."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import boto3
import httpx
import pytest

from receiver.sandbox.slack import SlackCatcher
from tests.conftest import Relay, sandbox_task, songs
from tests.s3_server import FAKE_CREDENTIALS
from tests.servers import run_asgi

pytestmark = pytest.mark.slow

TOKEN = "xoxb-acceptance-token"


@pytest.fixture
def slack() -> Iterator[tuple[SlackCatcher, str]]:
    """A Slack catcher (Web API) on loopback."""
    catcher = SlackCatcher(TOKEN)
    with run_asgi(catcher.app) as url:
        yield catcher, url


def test_disk_slack_and_s3_each_exactly_once_with_tripled_callback(
    make_relay: Callable[..., Relay],
    moto_s3: str,
    slack: tuple[SlackCatcher, str],
    sandbox: str,
) -> None:
    """One song (#dup: its callback comes three times) gives one file, one S3 object and one
    Slack reply that links the S3 copy, in the thread of the "generating…" message."""
    catcher, slack_url = slack
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    s3.create_bucket(Bucket="songs")
    config = f"""
[[handlers]]
name = "archive"
type = "disk"
path = "{{workdir}}/songs"

[[handlers]]
name = "bucket"
type = "s3"
bucket = "songs"
prefix = "aimusic/"
endpoint_url = "{moto_s3}"
region = "us-east-1"
presign = true

[[handlers]]
name = "team-chat"
type = "slack"
token = "${{SLACK_TOKEN}}"
channel = "#music"
api_base_url = "{slack_url}/api/"
after = ["bucket"]
"""
    relay = make_relay(config=config, SLACK_TOKEN=TOKEN, **FAKE_CREDENTIALS)
    task = relay.submit("triple take #dup", title="Echo <Chamber> & @channel")
    relay.wait_settled(task["id"])
    deadline = time.monotonic() + 15
    while (
        len(
            [
                a
                for a in sandbox_task(sandbox, task["upstream_id"])["callback_attempts"]
                if a["status"] == 200
            ]
        )
        < 3
    ):
        assert time.monotonic() < deadline, "the sandbox did not deliver three callbacks"
        time.sleep(0.05)
    time.sleep(0.5)  # room for a wrongly duplicated delivery to show up
    done = relay.wait_settled(task["id"])
    [event] = songs(done)
    results = {d["handler"]: d for d in event["deliveries"]}
    assert {name: d["state"] for name, d in results.items()} == {
        "archive": "succeeded",
        "bucket": "succeeded",
        "team-chat": "succeeded",
    }
    assert len(relay.audio_files()) == 1
    assert relay.count("deliveries") == 4  # archive, bucket, team-chat + team-chat's "generating…"
    objects = s3.list_objects_v2(Bucket="songs", Prefix="aimusic/")["Contents"]
    audio_keys = [o["Key"] for o in objects if o["Key"].endswith(".wav")]
    assert audio_keys == [results["bucket"]["result"]["key"]]
    posts = catcher.sent("chat.postMessage")
    assert len(posts) == 2  # "generating…" then the finished song, in its thread
    generating, finished = posts
    [announced] = [e for e in done["events"] if e["kind"] == "task.submitted"]
    assert "Generating" in json.dumps(generating.body)
    assert finished.body["thread_ts"] == announced["deliveries"][0]["result"]["ts"]
    sent = json.dumps(finished.body)
    presigned = results["bucket"]["result"]["url"]
    assert presigned.startswith(moto_s3)
    assert presigned.split("?")[0] in sent
    assert "<!channel>" not in sent and "Echo &lt;Chamber&gt; &amp;" in sent
    assert httpx.get(presigned).content == relay.audio_files()[0].read_bytes()
    assert TOKEN not in relay.log()
