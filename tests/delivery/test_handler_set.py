"""Routing rules, handler ordering, back-pressure and replay, on a running relay."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from handlers.registry import HandlerRegistry
from receiver.delivery.handler_set import HandlerSet, load_handler_set
from receiver.errors import ConfigError
from tests.conftest import Relay, songs
from tests.plugins import read_log

RECORDER = "tests.plugins:RecorderHandler"


def _handlers(tmp_path: Path, text: str) -> HandlerSet:
    path = tmp_path / "relay.toml"
    path.write_text(text)
    return load_handler_set(path, HandlerRegistry.with_plugins(), {})


def _recorder(name: str, log: str, extra: str = "") -> str:
    return f'[[handlers]]\nname = "{name}"\ntype = "{RECORDER}"\nlog_file = "{log}"\n{extra}\n'


def test_filters_choose_exactly_the_matching_handlers(tmp_path: Path) -> None:
    """Events, platforms and labels each narrow the handlers an event goes to."""
    log = str(tmp_path / "x")
    handlers = _handlers(
        tmp_path,
        _recorder("all", log)
        + _recorder("failures", log, 'events = ["song.failed"]')
        + _recorder("sonic-only", log, 'platforms = ["sonic"]')
        + _recorder("ads", log, 'labels = { team = "ads" }'),
    )
    route = handlers.route
    assert [n for n, _ in route("song.completed", "producer", {}, None)] == ["all"]
    assert [n for n, _ in route("song.completed", "sonic", {"team": "ads"}, None)] == [
        "all",
        "sonic-only",
        "ads",
    ]
    assert [n for n, _ in route("song.failed", "producer", {"team": "x"}, None)] == [
        "all",
        "failures",
    ]
    assert [n for n, _ in route("song.completed", "producer", {"team": "ads"}, ["ads"])] == ["ads"]
    assert route("song.streaming", "producer", {}, None) == []
    assert route("task.submitted", "producer", {}, None) == []


def test_retry_delays_use_full_jitter_under_the_cap_and_honour_retry_after(
    tmp_path: Path,
) -> None:
    """A retry waits from 0 to base·2^(attempt-1), capped; never less than Retry-After."""
    extra = "backoff_base_s = 2.0\nbackoff_max_s = 10.0"
    [configured] = _handlers(tmp_path, _recorder("r", str(tmp_path / "x"), extra))
    first = [configured.retry_delay(1, None) for _ in range(500)]
    late = [configured.retry_delay(9, None) for _ in range(500)]
    assert all(0 <= d <= 2.0 for d in first) and max(first) > 1.5
    assert all(0 <= d <= 10.0 for d in late) and max(late) > 9.0
    assert configured.retry_delay(9, 45.0) == 45.0


def test_no_handler_takes_delivery_dead_unless_it_asks(tmp_path: Path) -> None:
    """Alerts are opt-in: no built-in type's default events, nor ours, hold `delivery.dead`."""
    handlers = _handlers(
        tmp_path,
        '[[handlers]]\nname = "disk"\ntype = "disk"\n'
        '[[handlers]]\nname = "chat"\ntype = "slack"\nwebhook_url = "https://hooks.example/x"\n'
        '[[handlers]]\nname = "bucket"\ntype = "s3"\nbucket = "songs"\n'
        '[[handlers]]\nname = "notify"\ntype = "apprise"\nurls = ["json://127.0.0.1/x"]\n'
        '[[handlers]]\nname = "fwd"\ntype = "forward"\nurl = "https://hooks.example/y"\n'
        'secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"\n',
    )
    assert [] == handlers.route("delivery.dead", "producer", {}, None)
    assert [] == handlers.route_dead("song.completed", "disk", "producer", {})


def test_a_dead_letter_alerts_its_subscribers_but_not_itself_and_never_loops(
    tmp_path: Path,
) -> None:
    """`delivery.dead` goes to every handler taking it (platform and label filters apply, the
    task's own handler choice does not), never to the handler that died, and an alert that
    dies alerts nobody."""
    log = str(tmp_path / "x")
    handlers = _handlers(
        tmp_path,
        _recorder("songs", log)
        + _recorder("pager", log, 'events = ["song.completed", "delivery.dead"]')
        + _recorder("chat", log, 'events = ["delivery.dead"]')
        + _recorder("ads-chat", log, 'events = ["delivery.dead"]\nlabels = { team = "ads" }'),
    )
    assert [("pager", 0), ("chat", 0)] == handlers.route_dead(
        "song.completed", "songs", "producer", {}
    )
    assert [("chat", 0), ("ads-chat", 0)] == handlers.route_dead(
        "song.completed", "pager", "sonic", {"team": "ads"}
    )
    assert [] == handlers.route_dead("delivery.dead", "chat", "producer", {})
    assert ["pager", "chat"] == [
        n for n, _ in handlers.route("delivery.dead", "producer", {}, None)
    ]


def test_after_gives_stages_and_must_name_an_earlier_handler(tmp_path: Path) -> None:
    """`after` puts a handler one stage after its dependencies; a later or unknown name fails."""
    log = str(tmp_path / "x")
    handlers = _handlers(
        tmp_path,
        _recorder("a", log) + _recorder("b", log, 'after = ["a"]') + _recorder("c", log),
    )
    assert handlers.route("song.completed", "producer", {}, None) == [("a", 0), ("b", 1), ("c", 0)]
    with pytest.raises(ConfigError, match=r"relay.toml:\d+: .*'after': 'z' is not a handler"):
        _handlers(tmp_path, _recorder("a", log, 'after = ["z"]'))


def test_labels_route_songs_and_after_passes_results(
    make_relay: Callable[..., Relay], tmp_path: Path
) -> None:
    """An `ads`-labelled song reaches the ads handler; `after` runs second once first is
    done and sees its result."""
    log = tmp_path / "calls.jsonl"
    config = (
        _recorder("first", str(log), "sleep_s = 0.3")
        + _recorder("second", str(log), 'after = ["first"]')
        + _recorder("ads", str(log), 'labels = { team = "ads" }')
    )
    relay = make_relay(config=config)
    ads = relay.submit("jingle", labels={"team": "ads"})
    plain = relay.submit("ballad")
    relay.wait_settled(ads["id"])
    relay.wait_settled(plain["id"])
    calls = read_log(log)
    by_task = {
        ref: {c["handler"]: c for c in calls if c["task_ref"] == ref}
        for ref in (ads["id"], plain["id"])
    }
    assert sorted(by_task[ads["id"]]) == ["ads", "first", "second"]
    assert sorted(by_task[plain["id"]]) == ["first", "second"]
    for calls_of_task in by_task.values():
        first, second = calls_of_task["first"], calls_of_task["second"]
        assert second["started"] >= first["finished"]
        assert second["results"]["first"]["url"].startswith("https://copy.example/first/")


def test_retry_after_pauses_the_whole_handler(
    make_relay: Callable[..., Relay], tmp_path: Path
) -> None:
    """A destination's Retry-After delays that handler's next attempt, for every delivery."""
    log = tmp_path / "calls.jsonl"
    relay = make_relay(
        config=_recorder(
            "busy", str(log), "first_retry_after_s = 1.5\nconcurrency = 1\nbackoff_base_s = 0.01"
        )
    )
    tasks = [relay.submit(f"song {i}") for i in range(3)]
    for task in tasks:
        relay.wait_settled(task["id"])
    calls = sorted(read_log(log), key=lambda c: c["started"])
    assert calls[0]["failed"] is True
    assert len(calls) == 4
    assert all(c["started"] >= calls[0]["finished"] + 1.4 for c in calls[1:])


def test_concurrency_cap_and_rate_limit_space_the_attempts(
    make_relay: Callable[..., Relay], tmp_path: Path
) -> None:
    """concurrency = 1 never overlaps two attempts; rate_limit_per_s spaces their starts."""
    log = tmp_path / "calls.jsonl"
    relay = make_relay(
        config=_recorder("slow", str(log), "sleep_s = 0.1\nconcurrency = 1\nrate_limit_per_s = 4")
    )
    tasks = [relay.submit(f"song {i}") for i in range(4)]
    for task in tasks:
        relay.wait_settled(task["id"])
    calls = sorted(read_log(log), key=lambda c: c["started"])
    assert len(calls) == 4
    for earlier, later in itertools.pairwise(calls):
        assert later["started"] >= earlier["finished"]
        # 4/s is 0.25 s apart at the pacer; the handler starts a few ms after it (DB reads),
        # so allow for that jitter while staying well above the 0.1 s the sleep alone gives.
        assert later["started"] - earlier["started"] >= 0.2


def test_replay_reruns_with_the_previous_result(
    make_relay: Callable[..., Relay], tmp_path: Path
) -> None:
    """Replaying a delivery runs it again, handing the handler its earlier result."""
    log = tmp_path / "calls.jsonl"
    relay = make_relay(config=_recorder("rec", str(log)))
    task = relay.wait_settled(relay.submit("again")["id"])
    [delivery] = songs(task)[0]["deliveries"]
    url = f"{relay.url}/api/deliveries/{delivery['id']}/replay"
    assert httpx.post(url, headers=relay.admin).status_code == 202
    relay.wait_settled(task["id"])
    first, second = read_log(log)
    assert first["previous_result"] is None
    assert second["previous_result"]["url"] == delivery["result"]["url"]
    missing = httpx.post(f"{relay.url}/api/deliveries/nope/replay", headers=relay.admin)
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")


def test_bulk_replay_of_dead_letters_recovers_them(make_relay: Callable[..., Relay]) -> None:
    """A handler that died once succeeds when its dead letters are replayed in bulk."""
    config = (
        '[[handlers]]\nname = "flaky"\ntype = "tests.plugins:FlakyHandler"\nfail_times = 1\n'
        'counter_file = "{workdir}/calls"\nmax_attempts = 1\n'
    )
    relay = make_relay(config=config)
    task = relay.wait_settled(relay.submit("second chance")["id"])
    assert songs(task)[0]["deliveries"][0]["state"] == "dead"
    answer = httpx.post(
        f"{relay.url}/api/deliveries/replay-dead?handler=flaky", headers=relay.admin
    )
    assert answer.json() == {"replayed": 1}
    task = relay.wait_settled(task["id"])
    [delivery] = songs(task)[0]["deliveries"]
    assert (delivery["state"], delivery["result"]["calls"]) == ("succeeded", 2)
    assert [a["outcome"] for a in delivery["attempt_log"]] == ["failed", "succeeded"]
