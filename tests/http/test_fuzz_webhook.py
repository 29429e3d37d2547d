"""Fuzz the webhook routes of the real app under uvicorn: never a 5xx, always the contract's
answer, and nothing stored unless the signature held.

One relay per database serves the module (a SQLite file, then a PostgreSQL schema; the
dispatcher is off, so nothing leaves the machine). Hypothesis runs derandomized with a bounded
number of examples, so CI sees the same inputs every time. Every example checks the database
row counts before and after its request.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.app import create_app
from receiver.config import load_settings
from receiver.signing import CallbackTokens
from tests.conftest import POSTGRES_URL, _postgres_admin, schema_url
from tests.servers import run_asgi

pytestmark = pytest.mark.slow

SHARED_SECRET = "fuzz-shared-secret"
TASK_REF = "fuzz-task-ref"
LIMIT = 64 * 1024
TABLES = ("inbox", "events", "deliveries")
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclasses.dataclass(frozen=True)
class Target:
    """The running relay: its URL, database and the secrets a genuine sender would hold."""

    url: str
    database_url: str
    token: str
    task_secret: str
    client: httpx.Client

    def counts(self) -> tuple[int, ...]:
        queries = [f"SELECT count(*) FROM {table}" for table in TABLES]
        if self.database_url.startswith("sqlite"):
            with sqlite3.connect(self.database_url.split(":///", 1)[1]) as conn:
                return tuple(int(conn.execute(q).fetchone()[0]) for q in queries)
        import psycopg

        with psycopg.connect(self.database_url) as pg:
            return tuple(int(row[0]) for q in queries if (row := pg.execute(q).fetchone()))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh SQLite file, or a fresh schema in the machine's PostgreSQL, which refuses more
    than SQLite does (NUL in text, over-long ids, NaN in JSON)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('fuzzdb') / 'relay.db'}"
        return
    import psycopg

    schema = f"t_fuzz_{secrets.token_hex(6)}"
    try:
        _postgres_admin(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}")
    yield schema_url(schema)
    _postgres_admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE application_name = '{schema}'"
    )
    _postgres_admin(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Target]:
    """One relay per database for the module, with a body limit small enough to reach cheaply."""
    work = tmp_path_factory.mktemp("fuzz")
    (work / "relay.toml").write_text(
        f'[[handlers]]\nname = "disk"\ntype = "disk"\npath = "{work / "songs"}"\n'
    )
    config = load_settings(
        {
            "DATABASE_URL": database_url,
            "AIMUSIC_WEBHOOK_SECRET": SHARED_SECRET,
            "RELAY_SECRET_KEY": secrets.token_urlsafe(16),
            "RELAY_CONFIG": str(work / "relay.toml"),
            "RELAY_SPOOL_DIR": str(work / "spool"),
            "RELAY_MAX_BODY_BYTES": str(LIMIT),
        }
    )
    tokens = CallbackTokens(config.secret_keys)
    with (
        run_asgi(create_app(config, run_dispatcher=False)) as url,
        httpx.Client(base_url=url, timeout=30, trust_env=False) as client,
    ):
        yield Target(
            url=url,
            database_url=database_url,
            token=tokens.dumps(TASK_REF),
            task_secret=tokens.task_secrets(TASK_REF)[0],
            client=client,
        )


# --- bodies ---------------------------------------------------------------------------------

NASTY_TEXT = st.sampled_from(
    ["\ud800", "a\x00b", "../../etc/passwd", "x" * 300, "名前" * 100, "", " ", "{title}", "\u202e"]
)
TEXT = st.text(max_size=40) | NASTY_TEXT
NUMBERS = (
    st.integers()
    | st.sampled_from([10**400, -(10**30), 2**63, 2**64 + 1])
    | st.floats(allow_nan=True, allow_infinity=True)
)
JSONISH = st.recursive(
    st.none() | st.booleans() | NUMBERS | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=24,
)
STATES = st.sampled_from(["succeeded", "SUCCESS", "complete", "failed", "error", "streaming"])
CLIP = st.fixed_dictionaries(
    {"clip_id": TEXT | JSONISH, "state": STATES | JSONISH},
    optional={
        "title": TEXT | JSONISH,
        "audio_url": st.sampled_from(["http://127.0.0.1:9/a.mp3", "file:///etc/passwd"]) | TEXT,
        "image_url": TEXT,
        "duration": NUMBERS | TEXT,
        "mv": st.sampled_from(["sonic-v4", "chirp-v3"]) | TEXT,
        "sound": TEXT | JSONISH,
        "id": TEXT,
    },
)
CALLBACK = st.fixed_dictionaries(
    {"data": st.lists(CLIP, max_size=3) | CLIP | JSONISH},
    optional={
        "task_id": TEXT | JSONISH,
        "platform": st.sampled_from(["suno", "sonic", "producer", "nuro", "x" * 40]) | TEXT,
        "status": STATES | JSONISH,
        "code": NUMBERS | JSONISH,
        "message": TEXT | JSONISH,
        "event": st.sampled_from(["song.completed", "song.failed"]) | TEXT,
    },
)


def _nest(depth: int, kind: str, leaf: bytes = b'"leaf"') -> bytes:
    """`depth` levels of lists or objects around `leaf`, written directly (json.dumps of such a
    value would itself run out of recursion)."""
    opening, closing = (b"[", b"]") if kind == "list" else (b'{"k": ', b"}")
    return opening * depth + leaf + closing * depth


def _encode(value: Any, ascii_only: bool) -> bytes:
    # surrogatepass lets a lone surrogate through as the invalid UTF-8 a broken sender would send
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


DEEP = st.builds(_nest, st.integers(1, 20_000), st.sampled_from(["list", "dict"]))
DEEP_IN_CLIP = st.builds(_nest, st.integers(1, 3_000), st.sampled_from(["list", "dict"])).map(
    lambda nested: (
        b'{"task_id": "t", "data": [{"clip_id": "c", "state": "succeeded", "x": ' + nested + b"}]}"
    )
)
HUGE_NUMBER = st.sampled_from(
    [b"9" * 5000, b"1e999", b"-1e999", b"NaN", b"Infinity", b"0." + b"0" * 5000 + b"1", b"1" * 4000]
).map(lambda number: b'{"task_id": "t", "code": ' + number + b', "data": []}')
JSON_BODIES = st.builds(_encode, JSONISH | CALLBACK, st.booleans())
ODD_BODIES = JSON_BODIES | DEEP | DEEP_IN_CLIP | HUGE_NUMBER
BODIES = st.binary(max_size=2000) | ODD_BODIES


# --- headers ---------------------------------------------------------------------------------

HEADER_BYTES = st.lists(
    st.sampled_from([*range(0x21, 0x7F), *range(0x80, 0x100)]), min_size=1, max_size=60
).map(bytes)
# Repeated entries weight the draw towards requests that get past the cheap refusals.
TIMESTAMPS = st.sampled_from(
    ["now"] * 4 + ["stale", "future", "negative", "huge", "float", "word", "padded", "garbage"]
)
SIGNATURES = st.sampled_from(
    ["correct"] * 3
    + ["missing", "garbage", "right_shape", "other_body", "wrong_secret", "duplicated"]
)
CONTENT_TYPES = st.sampled_from(
    [
        *["application/json"] * 6,
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ]
)
ROUTES = st.sampled_from(["shared", "shared", "token", "token", "garbled_token", "random_token"])


def _timestamp(mode: str, junk: bytes) -> bytes:
    now = int(time.time())
    return {
        "now": str(now).encode(),
        "stale": str(now - 301).encode(),
        "future": str(now + 301).encode(),
        "negative": str(-now).encode(),
        "huge": b"1" + b"0" * 400,
        "float": f"{now}.5".encode(),
        "word": b"yesterday",
        "padded": b"\xa0" + str(now).encode(),
        "garbage": junk,
    }[mode]


def _sign(secret: str, timestamp: bytes, body: bytes) -> bytes:
    digest = hmac.new(secret.encode(), timestamp + b"." + body, hashlib.sha256).hexdigest()
    return b"sha256=" + digest.encode()


@dataclasses.dataclass(frozen=True)
class Call:
    """One request and whether a genuine sender could have made it (right secret, fresh time)."""

    path: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    genuine: bool

    def __repr__(self) -> str:  # hypothesis prints failing examples; keep them readable
        body = self.body if len(self.body) <= 300 else self.body[:300] + b"..."
        return f"Call({self.path[:120]!r}, {self.headers!r}, {body!r}, genuine={self.genuine})"


@st.composite
def calls(draw: st.DrawFn, target: Target, bodies: st.SearchStrategy[bytes], odd: bool) -> Call:
    """A request to a webhook route; `odd` keeps everything genuine except the body."""
    body = draw(bodies)
    route = "shared" if odd and draw(st.booleans()) else ("token" if odd else draw(ROUTES))
    secret = SHARED_SECRET if route == "shared" else target.task_secret
    path = "/webhooks/aimusic"
    if route == "token":
        path += "/" + target.token
    elif route == "garbled_token":
        spot = draw(st.integers(0, len(target.token) - 1))
        swapped = "A" if target.token[spot] != "A" else "B"
        path += "/" + target.token[:spot] + swapped + target.token[spot + 1 :]
    elif route == "random_token":
        path += "/" + quote(draw(st.text(min_size=1, max_size=80)), safe="")
    ts_mode = "now" if odd else draw(TIMESTAMPS)
    sig_mode = "correct" if odd else draw(SIGNATURES)
    content_type = "application/json" if odd else draw(CONTENT_TYPES)
    junk = draw(HEADER_BYTES)
    timestamp = _timestamp(ts_mode, junk)
    signature = {
        "correct": _sign(secret, timestamp, body),
        "missing": None,
        "garbage": junk,
        "right_shape": b"sha256=" + draw(st.binary(min_size=32, max_size=32)).hex().encode(),
        "other_body": _sign(secret, timestamp, body + b" "),
        "wrong_secret": _sign(secret + "x", timestamp, body),
        "duplicated": _sign(secret, timestamp, body),
    }[sig_mode]
    headers = [(b"x-webhook-timestamp", timestamp), (b"x-webhook-id", draw(HEADER_BYTES))]
    if signature is not None:
        headers.append((b"x-webhook-signature", signature))
    if sig_mode == "duplicated":
        headers.insert(draw(st.integers(0, len(headers))), (b"x-webhook-signature", junk))
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    if draw(st.booleans()):
        headers.append((b"x-webhook-event", draw(HEADER_BYTES)))
    # with two signature headers the relay reads the first, as Starlette's Headers.get does
    first = next((value for name, value in headers if name == b"x-webhook-signature"), None)
    genuine = (
        route in ("shared", "token")
        and first == _sign(secret, timestamp, body)
        and ts_mode == "now"
        and (content_type or "").lower().startswith("application/json")
        and len(body) <= LIMIT
    )
    return Call(path=path, headers=headers, body=body, genuine=genuine)


def send(target: Target, call: Call) -> httpx.Response:
    """Post `call` and check what holds for every answer: no 5xx, the contract's JSON."""
    before = target.counts()
    answer = target.client.post(call.path, content=call.body, headers=call.headers)
    after = target.counts()
    assert answer.status_code < 500, answer.text
    if answer.status_code == 307:
        # Starlette's trailing-slash redirect (a token of "/" decodes to ".../aimusic//"): it
        # points at a route that gives the contract's answer, and stores nothing itself.
        assert unquote(call.path).endswith("/"), (answer.headers, call)
        assert before == target.counts()
        return answer
    assert answer.headers.get("content-type", "").startswith("application/json"), (
        answer.status_code,
        answer.text[:300],
        call,
    )
    shown = answer.json()
    if answer.status_code == 200:
        assert call.genuine, f"accepted a call no genuine sender made: {shown}"
        assert shown["status"] in ("accepted", "duplicate")
    else:
        assert {"error", "detail"} == set(shown)
        assert all(isinstance(value, str) for value in shown.values())
        assert before == after, f"{answer.status_code} {shown} stored something"
    assert SHARED_SECRET not in answer.text and target.task_secret not in answer.text
    return answer


def test_anything_sent_gets_a_contract_answer_and_nothing_unsigned_is_stored(
    target: Target,
) -> None:
    """Random bodies, headers, signatures and tokens: never 5xx; 200 only for a genuine
    signature, every other answer is `{"error", "detail"}` and stores nothing."""

    @FUZZ
    @given(call=calls(target, BODIES, odd=False))
    def check(call: Call) -> None:
        send(target, call)

    check()


def test_validly_signed_odd_bodies_get_200_or_400(target: Target) -> None:
    """Bodies signed with the right secret but of any shape: 200 or 400, and a 400 stores
    nothing (deep nesting, huge numbers, NUL, lone surrogates, mistyped fields)."""

    @FUZZ
    @given(call=calls(target, ODD_BODIES, odd=True))
    def check(call: Call) -> None:
        answer = send(target, call)
        # DEEP bodies may outgrow the body limit: then the limit's 413 is the right answer
        too_large = answer.status_code == 413 and len(call.body) > LIMIT
        assert answer.status_code in (200, 400) or too_large, answer.text[:300]

    check()


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 30_000 + b"]" * 30_000,
        b'{"task_id": "t", "data": [{"clip_id": "\\ud800", "state": "succeeded"}]}',
        b'{"task_id": "t\\u0000", "data": [{"clip_id": "c", "state": "succeeded"}]}',
        b'{"task_id": "t", "data": [{"clip_id": "c", "state": "succeeded", "duration": 1e999}]}',
        b'{"task_id": "' + b"t" * 129 + b'", "data": [{"clip_id": "c", "state": "succeeded"}]}',
    ],
    ids=["deep", "surrogate", "nul", "infinite", "long_id"],
)
def test_signed_bodies_no_store_could_keep_are_400(target: Target, body: bytes) -> None:
    """Examples the fuzzer found (each was a 500 before): refused with 400, nothing stored."""
    timestamp = str(int(time.time())).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"x-webhook-timestamp", timestamp),
        (b"x-webhook-signature", _sign(SHARED_SECRET, timestamp, body)),
    ]
    before = target.counts()
    answer = target.client.post("/webhooks/aimusic", content=body, headers=headers)
    assert (400, "bad_payload") == (answer.status_code, answer.json()["error"])
    assert before == target.counts()


@pytest.mark.parametrize("timestamp", [b"1" + b"0" * 400, b"\xa01700000000", b"1_700_000_000"])
def test_timestamps_int_would_take_are_refused(target: Target, timestamp: bytes) -> None:
    """A correctly signed timestamp that is not plain digits is 401, not 500 (it overflowed the
    window check, or broke ASCII encoding of the signed message)."""
    body = b'{"task_id": "t", "data": []}'
    headers = [
        (b"content-type", b"application/json"),
        (b"x-webhook-timestamp", timestamp),
        (b"x-webhook-signature", _sign(SHARED_SECRET, timestamp, body)),
    ]
    answer = target.client.post("/webhooks/aimusic", content=body, headers=headers)
    assert (401, "bad_timestamp") == (answer.status_code, answer.json()["error"])


def test_valid_token_for_a_task_this_database_lacks_is_stored(target: Target) -> None:
    """A genuine per-task callback naming no task_id, for a task the database does not know
    (reset database, same key), is accepted (it was a 500: NOT NULL on events.task_id)."""
    body = b'{"data": [{"clip_id": "orphan-clip", "state": "succeeded"}]}'
    timestamp = str(int(time.time())).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"x-webhook-timestamp", timestamp),
        (b"x-webhook-signature", _sign(target.task_secret, timestamp, body)),
    ]
    before = target.counts()
    answer = target.client.post(f"/webhooks/aimusic/{target.token}", content=body, headers=headers)
    assert (200, "accepted") == (answer.status_code, answer.json()["status"])
    assert before[1] + 1 == target.counts()[1]
