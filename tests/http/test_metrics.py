"""`/metrics` after a scripted run: exact counts, checked against the database and the sandbox;
and the admin API's filters, paging and refusals on the same run."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from receiver.sandbox import SandboxOptions, create_sandbox_app
from receiver.store import Inbound, NewTask, SqlStore
from tests.conftest import Relay, finished_sandbox_task, new_relay, signed, songs
from tests.servers import free_port, run_asgi

pytestmark = pytest.mark.slow

SHARED_SECRET = "shared-secret-1"
CONFIG = """
[[handlers]]
name = "disk"
type = "disk"
path = "{workdir}/songs"

[[handlers]]
name = "flaky"
type = "tests.plugins:FlakyHandler"
events = ["song.completed"]
fail_times = 1
counter_file = "{workdir}/flaky-calls"
backoff_base_s = 0.05
backoff_max_s = 0.1

[[handlers]]
name = "doomed"
type = "tests.plugins:FlakyHandler"
events = ["song.failed"]
fail_times = 1000
permanent = true
counter_file = "{workdir}/doomed-calls"
"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(relay: Relay) -> Samples:
    """Every sample of the relay's `/metrics`, keyed by (sample name, sorted labels)."""
    return scrape_url(relay.url)


def scrape_url(url: str) -> Samples:
    answer = httpx.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def start_relay(workdir: Path, sandbox: str, **env: str) -> Relay:
    """A relay process like conftest's `make_relay`, for a module-scoped scenario."""
    workdir.mkdir(parents=True)
    env = {"AIMUSIC_WEBHOOK_SECRET": SHARED_SECRET, **env}
    return new_relay(workdir, sandbox, CONFIG, **env).start()


class Run:
    """What the scripted run did, for the tests to compare against."""

    def __init__(self, relay: Relay, sandbox: str) -> None:
        self.relay = relay
        self.sandbox = sandbox
        self.tasks: dict[str, dict[str, Any]] = {}
        self.external_task_id = ""

    def post_callback(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(
            f"{self.relay.url}/webhooks/aimusic", content=body, headers=headers, timeout=30
        )

    def api(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(
            f"{self.relay.url}{path}", params=params, headers=self.relay.admin, timeout=10
        )


@pytest.fixture(scope="module")
def run(sandbox: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Three songs submitted (one `#fail`), one refused upstream (403), one external callback
    sent twice, and one of each bad callback; then wait until every delivery has finished."""
    relay = start_relay(tmp_path_factory.mktemp("metrics") / "relay", sandbox)
    scripted = Run(relay, sandbox)
    try:
        for name, sound, team in (
            ("ads", "jingle for ads", "ads"),
            ("film", "film score", "film"),
            ("failing", "broken song #fail", "ads"),
        ):
            scripted.tasks[name] = relay.submit(sound, labels={"team": team})
        refused = httpx.post(
            f"{relay.url}/api/tasks",
            json={"params": {"sound": "pop", "lyrics": "la #copyright"}},
            headers=relay.admin,
            timeout=15,
        )
        assert (refused.status_code, refused.json()["error"]) == (403, "upstream_forbidden")
        for name, task in scripted.tasks.items():
            scripted.tasks[name] = relay.wait_settled(task["id"])

        external = finished_sandbox_task(sandbox, "external song")
        scripted.external_task_id = external["task_id"]
        headers, body = signed(external, SHARED_SECRET, webhook_id="external-1")
        assert scripted.post_callback(body, headers).json()["status"] == "accepted"
        headers, body = signed(external, SHARED_SECRET, webhook_id="external-1")
        assert scripted.post_callback(body, headers).json()["status"] == "duplicate"

        bad_sig_headers, bad_sig_body = signed(external, "not-the-secret")
        too_large_headers, too_large_body = signed(b"x" * (1024 * 1024 + 1), SHARED_SECRET)
        garbage_headers, garbage_body = signed(b"not json at all", SHARED_SECRET)
        refusals = {
            "bad_signature": (bad_sig_body, bad_sig_headers),
            "too_large": (too_large_body, too_large_headers),
            "bad_payload": (garbage_body, garbage_headers),
            "unsupported_media_type": (b"hello", {"Content-Type": "text/plain"}),
        }
        for code, (raw, hdrs) in refusals.items():
            assert scripted.post_callback(raw, hdrs).json()["error"] == code
        _wait_for_empty_queue(scripted)
        yield scripted
    finally:
        relay.stop()


def _wait_for_empty_queue(run: Run, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        open_rows = [
            d
            for d in run.api("/api/deliveries", limit=500).json()
            if d["state"] not in ("succeeded", "dead")
        ]
        if not open_rows:
            return
        time.sleep(0.1)
    raise AssertionError(f"deliveries still open: {open_rows}\n{run.relay.log()[-3000:]}")


def test_callback_counters_match_what_was_sent(run: Run) -> None:
    """accepted = callbacks stored (the sandbox's for our tasks, plus the external one),
    duplicate 1, each refusal 1, and every stored callback timed by the ingest histogram."""
    samples = scrape(run.relay)
    stored = run.relay.count("inbox", "source = 'callback'")
    expected = {
        "accepted": stored,
        "duplicate": 1,
        "bad_signature": 1,
        "too_large": 1,
        "bad_payload": 1,
        "unsupported_media_type": 1,
        "no_secret": 0,
        "missing_signature": 0,
        "stale_timestamp": 0,
        "bad_token": 0,
        "store_unavailable": 0,
    }
    actual = {
        outcome: value(samples, "aimusic_relay_callbacks_total", outcome=outcome)
        for outcome in expected
    }
    assert expected == actual
    assert stored >= 4  # at least one final callback per submitted song, plus the external one
    assert stored + 1 == value(samples, "aimusic_relay_ingest_seconds_count")


def test_delivery_counters_match_the_outbox(run: Run) -> None:
    """Per handler: succeeded and dead are the rows in those states; every attempt before the
    last one of a row was a retry. The flaky handler failed exactly once, the doomed one died
    once per failed song."""
    samples = scrape(run.relay)
    rows = run.api("/api/deliveries", limit=500).json()
    expected: dict[tuple[str, str], float] = {}
    for row in rows:
        key = (row["handler"], row["state"])
        expected[key] = expected.get(key, 0) + 1
        retries = (row["handler"], "retry")
        expected[retries] = expected.get(retries, 0) + row["attempts"] - 1
    actual = {
        (handler, outcome): value(
            samples, "aimusic_relay_deliveries_total", handler=handler, outcome=outcome
        )
        for handler in ("disk", "flaky", "doomed")
        for outcome in ("succeeded", "retry", "dead")
    }
    assert {k: v for k, v in expected.items() if v} == {k: v for k, v in actual.items() if v}
    failed_songs = len(run.api("/api/events", kind="song.failed", limit=500).json())
    assert failed_songs >= 1
    assert actual[("flaky", "retry")] == 1
    assert actual[("doomed", "dead")] == failed_songs
    finished = sum(v for (h, o), v in actual.items() if h == "disk" and o != "retry")
    assert finished == value(samples, "aimusic_relay_delivery_seconds_count", handler="disk")


def test_queue_gauges_upstream_errors_and_polls(run: Run) -> None:
    """Nothing left in the queue; the one upstream refusal was a 403; no poll ran (the grace
    period is longer than the run)."""
    samples = scrape(run.relay)
    assert 0 == value(samples, "aimusic_relay_queue_depth")
    assert 0 == value(samples, "aimusic_relay_oldest_pending_age_seconds")
    errors = {
        dict(labels)["status"]: v
        for (name, labels), v in samples.items()
        if name == "aimusic_relay_upstream_errors_total"
    }
    assert {"403": 1} == errors
    polls = sum(v for (name, _), v in samples.items() if name == "aimusic_relay_polls_total")
    assert 0 == polls


def test_dead_letters_queue_by_handler_and_build_info(run: Run) -> None:
    """The dead-letter gauge is the dead rows in the database; every configured handler has
    a queue depth (0 here, the old unlabelled series is kept); build_info carries the version;
    no `*_created` series is exported."""
    from receiver import __version__

    samples = scrape(run.relay)
    dead = run.relay.count("deliveries", "state = 'dead'")
    assert dead >= 1
    assert dead == value(samples, "aimusic_relay_dead_letters")
    for handler in ("disk", "flaky", "doomed"):
        key = ("aimusic_relay_queue_depth_by_handler", (("handler", handler),))
        assert 0 == samples[key]
    assert ("aimusic_relay_queue_depth", ()) in samples
    assert 1 == value(samples, "aimusic_relay_build_info", version=__version__)
    assert [] == [name for name, _ in samples if name.endswith("_created")]
    assert "_created" not in httpx.get(f"{run.relay.url}/metrics").text


def test_metrics_expose_no_secret_or_url(run: Run) -> None:
    """`/metrics` is public: no token, key, secret, URL or path appears in it."""
    text = httpx.get(f"{run.relay.url}/metrics").text
    env = run.relay.env
    for secret in (
        env["RELAY_ADMIN_TOKEN"],
        env["RELAY_SECRET_KEY"],
        env["AIMUSIC_API_KEY"],
        SHARED_SECRET,
        env["AIMUSIC_BASE_URL"],
        str(run.relay.workdir),
        "http://",
    ):
        assert secret not in text


def test_task_filters_return_exactly_the_matching_rows(run: Run) -> None:
    """state, family and label filters, alone and combined, select exactly the right tasks."""
    ours = {name: task["id"] for name, task in run.tasks.items()}

    def ids(**params: Any) -> set[str]:
        answer = run.api("/api/tasks", **params)
        assert answer.status_code == 200, answer.text
        return {task["id"] for task in answer.json()}

    assert {ours["ads"], ours["failing"]} == ids(label="team:ads")
    assert {ours["film"]} == ids(label="team:film")
    assert {ours["failing"]} == ids(label="team:ads", state="failed")
    assert set() == ids(label="team:nobody")
    assert {ours["ads"], ours["film"]} <= ids(state="succeeded")
    assert 5 == len(ids(family="producer"))  # three songs, the refused one, the external one
    assert set() == ids(family="sonic")
    both = httpx.get(
        f"{run.relay.url}/api/tasks?label=team:ads&label=team:film", headers=run.relay.admin
    )
    assert (400, "label: team given twice; a task's label has one value") == (
        both.status_code,
        both.json()["detail"],
    )


def test_event_and_delivery_filters(run: Run) -> None:
    """Events by kind and by task (either id); deliveries by handler and state."""
    failing = run.tasks["failing"]
    by_task = run.api("/api/events", task=failing["upstream_id"]).json()
    assert {e["id"] for e in failing["events"]} == {e["id"] for e in by_task}
    assert by_task == run.api("/api/events", task=failing["id"]).json()
    failed = run.api("/api/events", kind="song.failed").json()
    assert {e["id"] for e in songs(failing)} == {e["id"] for e in failed}
    dead = run.api("/api/deliveries", state="dead").json()
    assert {"doomed"} == {d["handler"] for d in dead}
    assert dead == run.api("/api/deliveries", state="dead", handler="doomed").json()
    assert [] == run.api("/api/deliveries", state="dead", handler="disk").json()


def test_pagination_walks_every_row_once(run: Run) -> None:
    """limit/offset pages, following X-Next-Offset (and Link) until it is absent, cover
    every task exactly once, in the same order as one big page."""
    everything = [t["id"] for t in run.api("/api/tasks", limit=500).json()]
    seen: list[str] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        answer = run.api("/api/tasks", limit=2, offset=offset)
        seen += [t["id"] for t in answer.json()]
        pages += 1
        next_offset = answer.headers.get("x-next-offset")
        if next_offset is not None:
            assert f"offset={next_offset}" in answer.headers["link"]
            assert answer.headers["link"].endswith('; rel="next"')
        offset = int(next_offset) if next_offset is not None else None
    assert everything == seen
    assert (5, 3) == (len(seen), pages)
    assert "x-next-offset" not in run.api("/api/tasks", limit=5).headers


@pytest.mark.parametrize(
    ("path", "param", "raw"),
    [
        ("/api/tasks", "limit", "0"),
        ("/api/tasks", "limit", "abc"),
        ("/api/tasks", "limit", "501"),
        ("/api/tasks", "limit", "1_0"),
        ("/api/tasks", "offset", "-1"),
        ("/api/tasks", "state", "done"),
        ("/api/tasks", "family", "jazz"),
        ("/api/tasks", "label", "no-colon"),
        ("/api/tasks", "label", 'quote"key:v'),
        ("/api/events", "kind", "song.done"),
        ("/api/events", "task", "x\x01y"),
        ("/api/deliveries", "state", "lost"),
        ("/api/deliveries", "offset", "99999999999"),
        ("/api/deliveries/replay-dead", "since", "nan"),
    ],
)
def test_bad_query_values_are_400_naming_the_parameter(
    run: Run, path: str, param: str, raw: str
) -> None:
    """Each wrong value is refused with 400 bad_request and a detail that starts with its
    name, instead of silently falling back to a default."""
    method = "POST" if path.endswith("replay-dead") else "GET"
    answer = httpx.request(
        method, f"{run.relay.url}{path}", params={param: raw}, headers=run.relay.admin
    )
    assert (400, "bad_request") == (answer.status_code, answer.json()["error"])
    assert answer.json()["detail"].startswith(f"{param}: ")


def test_credits_are_the_upstream_balance(run: Run) -> None:
    """GET /api/credits answers the provider's own balance."""
    upstream = httpx.get(
        f"{run.sandbox}/api/v1/get-credits", headers={"Authorization": "Bearer test-key"}
    ).json()
    answer = run.api("/api/credits")
    assert 200 == answer.status_code
    assert {"credits": upstream["credits"], "extra_credits": upstream["extra_credits"]} == (
        answer.json()
    )


def test_credits_errors_map_like_submit(make_relay: Callable[..., Relay]) -> None:
    """A wrong API key is the relay's problem, not the caller's: 502 upstream_unauthorized;
    the admin token is still required first."""
    with run_asgi(create_sandbox_app(SandboxOptions(api_key="the-key"))) as strict:
        relay = make_relay(AIMUSIC_BASE_URL=strict, AIMUSIC_API_KEY="not-the-key")
        assert 401 == httpx.get(f"{relay.url}/api/credits").status_code
        answer = httpx.get(f"{relay.url}/api/credits", headers=relay.admin, timeout=10)
    assert (502, "upstream_unauthorized") == (answer.status_code, answer.json()["error"])
    assert "not-the-key" not in answer.text
    samples = scrape(relay)
    assert 1 == value(samples, "aimusic_relay_upstream_errors_total", status="401")


def test_polls_are_counted_one_per_upstream_request(make_relay: Callable[..., Relay]) -> None:
    """A task whose callback never comes is polled: the poll counters add up to the poll
    requests the sandbox received for it, and exactly one poll found the song."""
    relay = make_relay(RELAY_POLL_GRACE_S="0.5", RELAY_POLL_MAX_INTERVAL_S="0.5")
    task = relay.wait_settled(relay.submit("quiet song #nocallback")["id"])
    requests = httpx.get(f"{relay.env['AIMUSIC_BASE_URL']}/sandbox/requests").json()
    polled = [
        r
        for r in requests
        if r["method"] == "GET" and r["path"].endswith(f"/task/{task['upstream_id']}")
    ]
    samples = scrape(relay)
    polls = {
        dict(labels)["result"]: v
        for (name, labels), v in samples.items()
        if name == "aimusic_relay_polls_total" and v
    }
    assert 1 == polls.pop("found")
    assert set(polls) <= {"pending"}
    assert len(polled) == 1 + sum(polls.values())


def test_two_apps_in_one_process_count_apart(tmp_path: Path, sandbox: str) -> None:
    """Each app owns its registry: a refusal counted by one is not seen by the other."""
    from receiver.app import create_app
    from receiver.config import Settings

    def settings(name: str) -> Settings:
        (tmp_path / name).mkdir()
        return Settings(
            aimusic_api_key="k",  # type: ignore[arg-type]
            aimusic_base_url=sandbox,
            relay_secret_key="s",  # type: ignore[arg-type]
            database_url=f"sqlite:///{tmp_path / name / 'relay.db'}",
            relay_config=None,
            relay_spool_dir=tmp_path / name / "spool",
        )

    with (
        run_asgi(create_app(settings("one"))) as one,
        run_asgi(create_app(settings("two"))) as two,
    ):
        httpx.post(f"{one}/webhooks/aimusic", content=b"x", headers={"Content-Type": "text/plain"})
        counted = [
            value(
                scrape_url(url), "aimusic_relay_callbacks_total", outcome="unsupported_media_type"
            )
            for url in (one, two)
        ]
    assert [1, 0] == counted


async def test_label_filters_and_queue_stats_on_every_backend(store: SqlStore) -> None:
    """The JSON label lookup and the queue aggregate mean the same on SQLite and PostgreSQL."""
    for ref, labels in (("t1", {"team": "ads", "a.b-c": "x y"}), ("t2", {"team": "film"})):
        await store.create_task(
            NewTask(ref, "producer", "producer", None, {}, labels, None, next_poll_at=None)
        )
    found = await store.reads.list_tasks(labels={"a.b-c": "x y", "team": "ads"})
    assert ["t1"] == [t.id for t in found]
    assert ["t2"] == [t.id for t in await store.reads.list_tasks(labels={"team": "film"})]
    assert [] == await store.reads.list_tasks(labels={"team": "ads"}, state="failed")
    assert 2 == len(await store.reads.list_tasks(family="producer", state="submitting"))

    assert (0, None) == await store.reads.queue_stats()
    before = time.time()
    inbound = Inbound(
        source="callback",
        body=b"{}",
        platform="producer",
        clips=[("song.completed", "clip-1", {"title": "t"})],
        task_id="up-1",
        webhook_id="w1",
    )
    await store.record_inbound(inbound, lambda *_: [("a", 0), ("b", 0)])
    depth, oldest = await store.reads.queue_stats()
    assert depth == 2 and oldest is not None and before <= oldest <= time.time()
    claims = await store.claim("me", 1, 60.0)
    assert (2, oldest) == await store.reads.queue_stats()  # one running, one still pending
    await store.succeed(claims[0], "me", None)
    assert (1, oldest) == await store.reads.queue_stats()
    [last] = await store.claim("me", 1, 60.0)
    assert (1, None) == await store.reads.queue_stats()  # running, none pending
    await store.succeed(last, "me", None)
    assert (0, None) == await store.reads.queue_stats()


async def test_queue_gauges_by_handler_on_every_backend(store: SqlStore) -> None:
    """Queue depth per handler counts pending and running rows (a configured handler with
    none shows 0), and the dead-letter gauge the dead ones, on SQLite and PostgreSQL."""
    from receiver.metrics import Metrics

    metrics = Metrics.create(["a", "b", "idle"])

    async def gauges() -> dict[str, float]:
        text = (await metrics.render(store)).decode()
        found = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        return {
            "a": value(found, "aimusic_relay_queue_depth_by_handler", handler="a"),
            "b": value(found, "aimusic_relay_queue_depth_by_handler", handler="b"),
            "idle": found[("aimusic_relay_queue_depth_by_handler", (("handler", "idle"),))],
            "dead": value(found, "aimusic_relay_dead_letters"),
        }

    for number in (1, 2):
        inbound = Inbound(
            source="callback",
            body=b"{}",
            platform="producer",
            clips=[("song.completed", f"clip-{number}", {"title": "t"})],
            task_id=f"up-{number}",
            webhook_id=f"w{number}",
        )
        await store.record_inbound(inbound, lambda *_: [("a", 0), ("b", 0)])
    assert {"a": 2, "b": 2, "idle": 0, "dead": 0} == await gauges()
    claims = await store.claim("me", 4, 60.0)
    assert {"a": 2, "b": 2, "idle": 0, "dead": 0} == await gauges()  # running still queued
    by_handler = {c.handler: c for c in claims}
    await store.fail(by_handler["a"], "me", "broken", "destination", None)
    await store.succeed(by_handler["b"], "me", None)
    assert {"a": 1, "b": 1, "idle": 0, "dead": 1} == await gauges()


async def test_upstream_client_reports_each_failed_exchange(sandbox: str) -> None:
    """The client's observer hears every failed exchange, retries included (three refused
    connections for one unreachable poll); a successful call reports nothing."""
    from receiver.errors import UpstreamUnavailable
    from receiver.upstream.client import UpstreamClient

    heard: list[str] = []
    url = f"http://127.0.0.1:{free_port()}"
    async with UpstreamClient(url, "k", retry_delays=(0.01, 0.01), on_error=heard.append) as up:
        with pytest.raises(UpstreamUnavailable):
            await up.producer_task("t")
    assert ["connect"] * 3 == heard
    heard.clear()
    async with UpstreamClient(sandbox, "k", on_error=heard.append) as up:
        await up.credits()
    assert [] == heard
