"""`delivery.dead`: a dead-lettered delivery raises one alert to its subscribers, never a loop."""

from __future__ import annotations

import base64
import dataclasses
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from handlers.disk import DiskHandler
from handlers.forward import ForwardHandler
from handlers.s3 import S3Handler
from receiver.delivery.alerts import DeadNotice
from receiver.errors import LeaseLost
from receiver.models import Event
from receiver.sandbox.slack import WEBHOOK_PATH, SlackCatcher
from receiver.store import Claim, DeadAlert, Finish, Inbound, SqlStore
from tests.conftest import MakeContext, Relay
from tests.servers import run_asgi

SECRET = "whsec_" + base64.b64encode(b"d" * 24).decode()


@pytest.fixture(scope="module")
def slack() -> Iterator[tuple[SlackCatcher, str]]:
    """One Slack catcher on loopback for the module, and its base URL."""
    catcher = SlackCatcher()
    with run_asgi(catcher.app) as url:
        yield catcher, url


def _config(slack_url: str, moto: str, *, broken_alerts: bool = True) -> str:
    """An S3 handler whose bucket does not exist (every upload dies at once: NoSuchBucket), a
    Slack handler that takes only `delivery.dead`, and one more whose webhook is gone (404)."""
    config = (
        '[[handlers]]\nname = "bucket"\ntype = "s3"\nbucket = "no-such-bucket"\n'
        f'endpoint_url = "{moto}"\n\n'
        '[[handlers]]\nname = "alerts"\ntype = "slack"\n'
        f'webhook_url = "{slack_url}{WEBHOOK_PATH}"\nevents = ["delivery.dead"]\n\n'
    )
    if broken_alerts:
        config += (
            '[[handlers]]\nname = "broken-alerts"\ntype = "slack"\n'
            f'webhook_url = "{slack_url}/services/T/B/gone"\nevents = ["delivery.dead"]\n'
        )
    return config


def _events(relay: Relay, kind: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{relay.url}/api/events", params={"kind": kind}, headers=relay.admin, timeout=10
    )
    assert 200 == answer.status_code, answer.text
    return list(answer.json())


def _settled(relay: Relay, task_id: str, dead_events: int, timeout: float = 30) -> dict[str, Any]:
    """The task once it has `dead_events` delivery.dead events and no delivery is open."""
    deadline = time.monotonic() + timeout
    while True:
        task = relay.task(task_id)
        kinds = [e["kind"] for e in task["events"]]
        open_ = [
            d
            for e in task["events"]
            for d in e["deliveries"]
            if d["state"] in ("pending", "running")
        ]
        if kinds.count("delivery.dead") >= dead_events and "song.completed" in kinds and not open_:
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled: {task}\n{relay.log()[-3000:]}")
        time.sleep(0.05)


def _deliveries(task: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """The deliveries of the task's `kind` events, by handler (the latest event's win)."""
    return {d["handler"]: d for e in task["events"] if e["kind"] == kind for d in e["deliveries"]}


def test_a_dead_delivery_alerts_once_and_a_dead_alert_raises_nothing(
    make_relay: Callable[..., Relay], slack: tuple[SlackCatcher, str], moto_s3: str
) -> None:
    """The dead S3 upload gives exactly one Slack message naming the handler, the title, the
    error, whom to blame and a replay link; the alert handler that dies too raises nothing."""
    catcher, url = slack
    catcher.reset()
    relay = make_relay(config=_config(url, moto_s3))
    task = relay.submit("office ambience", title="Rainy Office")
    done = _settled(relay, task["id"], dead_events=1)

    upload = _deliveries(done, "song.completed")["bucket"]
    assert ("dead", "destination") == (upload["state"], upload["blame"])
    alerts = _deliveries(done, "delivery.dead")
    assert {"alerts", "broken-alerts"} == set(alerts)  # never the handler that died
    assert "succeeded" == alerts["alerts"]["state"]
    assert "dead" == alerts["broken-alerts"]["state"]  # and its death raised no further event
    [event] = _events(relay, "delivery.dead")
    assert 1 == relay.count("events", "kind = 'delivery.dead'")
    clip = event["clip"]
    assert ("bucket", "s3", "song.completed", "Rainy Office") == (
        clip["handler"],
        clip["handler_type"],
        clip["event_kind"],
        clip["title"],
    )
    assert (upload["id"], 1, "destination") == (
        clip["delivery_id"],
        clip["attempts"],
        clip["blame"],
    )
    assert event["task_ref"] == task["id"]

    sent = catcher.sent("webhook")
    [message] = [r for r in sent if r.path == WEBHOOK_PATH]
    assert 1 == len(sent) - 1  # and one try at the webhook that is gone (404)
    text = message.body["text"]
    link = f"{relay.url}/admin/tasks/{task['id']}"
    assert text.startswith("⚠️ bucket: the S3 upload of “Rainy Office” failed after 1 attempt:")
    assert "NoSuchBucket" in text and "(blame: destination)" in text
    assert text.endswith(f"— replay: <{link}|dashboard>")


def test_a_replayed_delivery_that_dies_again_alerts_again(
    make_relay: Callable[..., Relay], slack: tuple[SlackCatcher, str], moto_s3: str
) -> None:
    """Each dead-lettering is its own alert: replay the dead upload, it dies again, and the
    channel hears of it a second time; a replayed dead alert that dies again raises nothing."""
    catcher, url = slack
    catcher.reset()
    relay = make_relay(config=_config(url, moto_s3))
    task = relay.submit("office ambience", title="Rainy Office")
    done = _settled(relay, task["id"], dead_events=1)
    upload = _deliveries(done, "song.completed")["bucket"]

    answer = httpx.post(
        f"{relay.url}/api/deliveries/{upload['id']}/replay", headers=relay.admin, timeout=10
    )
    assert 202 == answer.status_code, answer.text
    _settled(relay, task["id"], dead_events=2)
    assert 2 == len(_events(relay, "delivery.dead"))
    good = [r for r in catcher.sent("webhook") if r.path == WEBHOOK_PATH]
    assert 2 == len(good)
    assert all("Rainy Office" in r.body["text"] for r in good)

    answer = httpx.post(
        f"{relay.url}/api/deliveries/replay-dead?handler=broken-alerts",
        headers=relay.admin,
        timeout=10,
    )
    assert {"replayed": 2} == answer.json()
    deadline = time.monotonic() + 20
    while (
        relay.count("deliveries", "state IN ('pending', 'running')") and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert 0 == relay.count("deliveries", "state IN ('pending', 'running')")
    assert 2 == relay.count("deliveries", "handler = 'broken-alerts' AND state = 'dead'")
    assert 2 == relay.count("events", "kind = 'delivery.dead'")


def test_without_a_subscriber_a_dead_delivery_raises_no_event(
    make_relay: Callable[..., Relay], moto_s3: str
) -> None:
    """Alerts are opt-in: with no handler taking `delivery.dead`, nothing new is stored."""
    config = (
        '[[handlers]]\nname = "bucket"\ntype = "s3"\nbucket = "no-such-bucket"\n'
        f'endpoint_url = "{moto_s3}"\n'
    )
    relay = make_relay(config=config)
    task = relay.submit("office ambience", title="Rainy Office")
    done = relay.wait_settled(task["id"])
    assert "dead" == _deliveries(done, "song.completed")["bucket"]["state"]
    assert [] == _events(relay, "delivery.dead")
    assert 0 == relay.count("events", "kind = 'delivery.dead'")


def _alert() -> Event:
    """A `delivery.dead` event about the S3 handler `bucket` giving up on "Rainy Office"."""
    about = Event(
        id="evt-1",
        kind="song.completed",
        task_id="task-1",
        clip_id="clip-1",
        platform="producer",
        clip={"title": "Rainy Office", "audio_url": "https://cdn.example/a.mp3"},
        source="callback",
        received_at=datetime(2024, 5, 6, 23, 30, tzinfo=UTC),
        task_ref="t-1",
    )
    notice = DeadNotice.for_death(
        about,
        handler="bucket",
        handler_type="s3",
        delivery_id="d-1",
        error="AccessDenied",
        blame="destination",
        attempts=2,
        public_url="https://relay.example",
    )
    return dataclasses.replace(about, id="evt-2", kind="delivery.dead", clip=notice.as_clip())


async def test_disk_and_s3_ignore_an_alert(tmp_path: Path, make_ctx: MakeContext) -> None:
    """An alert carries no song: disk writes nothing and S3 uploads nothing (not even a client)."""
    disk = DiskHandler("archive", DiskHandler.Config(path=str(tmp_path / "songs")))
    assert await disk.handle(_alert(), make_ctx()) is None
    assert not (tmp_path / "songs").exists()
    s3 = S3Handler("bucket", S3Handler.Config(bucket="songs"))
    assert {"skipped": "delivery.dead has no audio"} == await s3.handle(_alert(), make_ctx())
    assert s3._s3 is None


async def test_forward_passes_an_alert_on_like_any_event(make_ctx: MakeContext) -> None:
    """Your own service gets the alert signed, as `type: delivery.dead`, with its notice."""
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        received.append(Webhook(SECRET).verify(await request.body(), dict(request.headers)))
        return Response("ok")

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with run_asgi(app) as url:
        forward = ForwardHandler("mine", ForwardHandler.Config(url=f"{url}/hook", secret=SECRET))
        result = await forward.handle(_alert(), make_ctx())
    assert 200 == result["status"]
    [payload] = received
    assert "delivery.dead" == payload["type"]
    clip = payload["data"]["clip"]
    assert ("bucket", "AccessDenied", "destination", 2) == (
        clip["handler"],
        clip["error"],
        clip["blame"],
        clip["attempts"],
    )
    assert "https://relay.example/admin/tasks/t-1" == clip["dashboard_url"]
    assert payload["data"]["audio_url"] is None


def _dead(claim: Claim, targets: tuple[tuple[str, int], ...] = (("alerts", 0),)) -> Finish:
    """A dead finish of `claim` whose alert goes to `targets`."""
    notice = DeadNotice.for_death(
        claim.event,
        handler=claim.handler,
        handler_type="s3",
        delivery_id=claim.delivery_id,
        error="AccessDenied",
        blame="destination",
        attempts=claim.attempt,
        public_url="https://relay.example",
    )
    alert = DeadAlert(claim.event, notice.as_clip(), targets)
    return Finish(
        claim.delivery_id, "w", claim.attempt, "dead", "AccessDenied", "destination", alert=alert
    )


async def test_store_raises_one_alert_per_dead_lettering_in_the_same_write(
    store: SqlStore,
) -> None:
    """On every backend: the dead finish stores the alert and its delivery; the alert's own
    death stores nothing; a replayed delivery that dies again alerts again."""
    inbound = Inbound(
        source="callback",
        body=b"{}",
        platform="producer",
        clips=[("song.completed", "clip-1", {"title": "Rainy Office"})],
        task_id="up-1",
    )
    await store.record_inbound(inbound, lambda *a: [("bucket", 0)])
    [upload] = await store.claim("w", 10, 30)
    await store.finish(_dead(upload))
    [event] = await store.reads.list_events(kind="delivery.dead")
    assert ("up-1", "clip-1", "relay", "AccessDenied") == (
        event.task_id,
        event.clip_id,
        event.source,
        event.error,
    )
    assert "Rainy Office" == event.clip["title"]
    assert f"dead:{upload.delivery_id}:1" == event.dedupe_key

    [alert] = await store.claim("w", 10, 30)
    assert ("alerts", "delivery.dead") == (alert.handler, alert.event.kind)
    assert "bucket" not in alert.task_results  # nor is an alert ever a song's task result
    await store.finish(_dead(alert, (("other", 0),)))  # an alert about an alert: never stored
    assert 1 == len(await store.reads.list_events(kind="delivery.dead"))

    assert 1 == await store.replay(delivery_id=upload.delivery_id)
    [again] = await store.claim("w", 10, 30)
    assert 1 == again.attempt  # the counter restarts; the key still differs
    await store.finish(_dead(again))
    keys = sorted(e.dedupe_key for e in await store.reads.list_events(kind="delivery.dead"))
    assert [f"dead:{upload.delivery_id}:1", f"dead:{upload.delivery_id}:2"] == keys
    assert 1 == len(await store.reads.list_deliveries("pending", handler="alerts"))  # the new one
    with pytest.raises(LeaseLost):  # not held any more: refused, and nothing is written
        await store.finish(Finish(again.delivery_id, "w", again.attempt, "dead"))
    assert 2 == len(await store.reads.list_events(kind="delivery.dead"))
