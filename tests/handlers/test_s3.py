"""The s3 handler uploads songs and covers to a real S3 server (moto) and says whom to blame."""

# STYLE.md asks for `assert expected == actual`, which ruff's SIM300 calls a Yoda condition.

from __future__ import annotations

import collections
import hashlib
import io
import random
import secrets
import unicodedata
import wave
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import httpx
import pydantic
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from handlers.base import Handler, HandlerError
from handlers.s3 import S3Handler, key_segment
from receiver.models import Event
from tests.conftest import MakeContext
from tests.s3_server import FAKE_CREDENTIALS
from tests.servers import free_port, run_asgi


def make_wav(data_bytes: int) -> bytes:
    """A valid mono 16-bit WAV file carrying `data_bytes` of seeded noise."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(44100)
        out.writeframes(random.Random(7).randbytes(data_bytes))
    return buffer.getvalue()


BIG_WAV = make_wav(12 * 1024 * 1024)  # above a 5 MB multipart threshold: three 5 MB parts
SMALL_WAV = make_wav(4000)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
TITLE = "Nuit étoilée — 夜のドライブ 100%"
Media = tuple[str, collections.Counter[str]]


def sha(data: bytes) -> str:
    """The SHA-256 of `data`, to compare big bodies without printing them."""
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def media() -> Iterator[Media]:
    """A file server on loopback for audio and cover, and the number of requests per path."""
    hits: collections.Counter[str] = collections.Counter()

    def serve(body: bytes, media_type: str) -> Any:
        async def endpoint(request: Request) -> Response:
            hits[request.url.path] += 1
            return Response(body, media_type=media_type)

        return endpoint

    app = Starlette(
        routes=[
            Route("/song.wav", serve(BIG_WAV, "audio/wav")),
            Route("/small.wav", serve(SMALL_WAV, "audio/x-wav")),
            Route("/cover.png", serve(PNG, "image/png")),
            Route("/track", serve(SMALL_WAV, "application/octet-stream")),
            Route("/lyrics.txt", serve(SMALL_WAV, "application/octet-stream")),
            Route("/art.svg", serve(PNG, "image/svg+xml")),
        ]
    )
    with run_asgi(app) as url:
        yield url, hits


@pytest.fixture(scope="module")
def failing_s3() -> Iterator[str]:
    """An S3-style endpoint whose answer depends on the bucket: throttled or refused."""
    answers = {
        "slow-down": (503, "SlowDown", {"Retry-After": "7"}),
        "denied": (403, "SignatureDoesNotMatch", {}),
    }

    async def endpoint(request: Request) -> Response:
        status, code, headers = answers[request.path_params["bucket"]]
        await request.body()  # a server reads the request before it answers
        body = f"<Error><Code>{code}</Code><Message>no</Message></Error>"
        return Response(body, status_code=status, headers=headers, media_type="application/xml")

    methods = ["GET", "PUT", "POST", "HEAD"]
    app = Starlette(routes=[Route("/{bucket}/{key:path}", endpoint, methods=methods)])
    with run_asgi(app) as url:
        yield url


@pytest.fixture
def s3(moto_s3: str) -> Any:
    """A boto3 client of the moto server, to create buckets and read objects back."""
    return boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh, empty bucket."""
    name = f"songs-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def make_event(media: Media) -> Callable[..., Event]:
    """A completed song event whose clip fields can be overridden."""

    def make(kind: str = "song.completed", path: str = "/song.wav", **clip: Any) -> Event:
        fields = {
            "title": TITLE,
            "audio_url": f"{media[0]}{path}?token=SECRET",
            "image_url": f"{media[0]}/cover.png",
            **clip,
        }
        return Event(
            id="evt-1",
            kind=kind,  # type: ignore[arg-type]
            task_id=str(fields.pop("task_id", "task-1")),
            clip_id=str(fields.pop("clip_id", "clip-1")),
            platform=str(fields.pop("platform", "sonic")),
            clip={k: v for k, v in fields.items() if v is not None},
            source="callback",
            received_at=datetime(2024, 5, 6, 23, 30, tzinfo=UTC),
        )

    return make


def handler(bucket: str, endpoint: str, **options: Any) -> S3Handler:
    """An s3 handler for `bucket` at `endpoint`."""
    config = S3Handler.Config(bucket=bucket, endpoint_url=endpoint, **options)
    return S3Handler("bucket", config)


async def test_song_is_uploaded_multipart_with_metadata_and_cover(
    moto_s3: str, s3: Any, bucket: str, make_ctx: MakeContext, make_event: Callable[..., Event]
) -> None:
    """A 12 MB song goes up in three parts under the templated key, with its cover beside it."""
    uploader = handler(
        bucket, moto_s3, prefix="aimusic/", multipart_threshold_mb=5, multipart_chunk_mb=5
    )
    result = await uploader.handle(make_event(), make_ctx())

    key = "aimusic/2024-05-06/task-1/clip-1.wav"
    assert result is not None
    assert (bucket, key, f"s3://{bucket}/{key}", len(BIG_WAV)) == (
        result["bucket"],
        result["key"],
        result["url"],
        result["size"],
    )
    assert result["etag"].endswith("-3")  # a multipart upload's ETag counts its parts
    assert "aimusic/2024-05-06/task-1/clip-1.png" == result["cover_key"]
    stored = s3.get_object(Bucket=bucket, Key=key)
    assert ("audio/wav", sha(BIG_WAV)) == (stored["ContentType"], sha(stored["Body"].read()))
    meta = stored["Metadata"]
    assert ("task-1", "clip-1", "sonic", "evt-1") == (
        meta["task-id"],
        meta["clip-id"],
        meta["platform"],
        meta["event-id"],
    )
    assert meta["title"].isascii()
    assert TITLE == unquote(meta["title"])
    cover = s3.get_object(Bucket=bucket, Key=result["cover_key"])
    assert ("image/png", PNG) == (cover["ContentType"], cover["Body"].read())
    assert isinstance(uploader, Handler)


async def test_presigned_url_serves_the_same_bytes(
    moto_s3: str, bucket: str, make_ctx: MakeContext, make_event: Callable[..., Event]
) -> None:
    """With presign the result's url is an http(s) link anyone can fetch until it expires."""
    uploader = handler(bucket, moto_s3, presign=True, presign_expires_s=3600, cover=False)
    result = await uploader.handle(make_event(path="/small.wav"), make_ctx())
    assert result is not None and result["cover_key"] is None
    assert result["url"].startswith(f"{moto_s3}/{bucket}/")
    assert "X-Amz-Expires=3600" in result["url"]
    async with httpx.AsyncClient(trust_env=False) as anonymous:
        fetched = await anonymous.get(result["url"])
    assert (200, sha(SMALL_WAV)) == (fetched.status_code, sha(fetched.content))


async def test_two_handlers_of_one_event_download_once(
    moto_s3: str,
    bucket: str,
    media: Media,
    make_ctx: MakeContext,
    make_event: Callable[..., Event],
) -> None:
    """Two s3 handlers of the same event upload from one spooled copy of audio and cover."""
    before = media[1].copy()
    event = make_event()
    first = handler(bucket, moto_s3, prefix="a/", multipart_threshold_mb=5, multipart_chunk_mb=5)
    second = handler(bucket, moto_s3, prefix="b/")
    results = [await first.handle(event, make_ctx()), await second.handle(event, make_ctx())]
    assert {"/song.wav": 1, "/cover.png": 1} == dict(media[1] - before)
    assert [len(BIG_WAV)] * 2 == [r["size"] for r in results if r is not None]


async def test_content_type_falls_back_to_the_extension(
    moto_s3: str, s3: Any, bucket: str, make_ctx: MakeContext, make_event: Callable[..., Event]
) -> None:
    """A generic served type takes its type from the extension; config can force one."""
    result = await handler(bucket, moto_s3, cover=False).handle(
        make_event(path="/track"), make_ctx()
    )
    assert result is not None and result["key"].endswith("/clip-1.mp3")
    assert "audio/mpeg" == s3.head_object(Bucket=bucket, Key=result["key"])["ContentType"]
    forced = handler(bucket, moto_s3, cover=False, content_type="audio/x-custom")
    result = await forced.handle(make_event(path="/small.wav"), make_ctx())
    assert result is not None and result["key"].endswith("/clip-1.wav")
    assert "audio/x-custom" == s3.head_object(Bucket=bucket, Key=result["key"])["ContentType"]


async def test_untyped_audio_with_a_non_audio_suffix_is_refused_before_any_upload(
    moto_s3: str, s3: Any, bucket: str, make_ctx: MakeContext, make_event: Callable[..., Event]
) -> None:
    """Octet-stream audio at `.txt` is a permanent error naming the suffix; nothing is stored."""
    with pytest.raises(HandlerError) as caught:
        await handler(bucket, moto_s3).handle(make_event(path="/lyrics.txt"), make_ctx())
    assert (False, True) == (caught.value.retryable, ".txt" in caught.value.message)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


async def test_cover_that_is_not_a_raster_image_is_skipped(
    moto_s3: str,
    s3: Any,
    bucket: str,
    media: Media,
    make_ctx: MakeContext,
    make_event: Callable[..., Event],
) -> None:
    """An SVG cover is left out (it can carry script); the song is still uploaded."""
    event = make_event(path="/small.wav", image_url=f"{media[0]}/art.svg")
    result = await handler(bucket, moto_s3).handle(event, make_ctx())
    assert result is not None and result["cover_key"] is None
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert ["2024-05-06/task-1/clip-1.wav"] == keys


@pytest.mark.parametrize(
    ("title", "clip_id"),
    [
        ("../../../etc/passwd", "../../x"),
        ("/etc/passwd", "/abs/clip"),
        ("a\x00b\x07c\u202ed\r\nX-Evil: 1", "c\x00\n1"),
        ("..", "."),
        ("   ", ""),
        ("名前" * 200, "é" * 300),
    ],
)
async def test_hostile_values_become_safe_keys(
    title: str,
    clip_id: str,
    moto_s3: str,
    s3: Any,
    bucket: str,
    make_ctx: MakeContext,
    make_event: Callable[..., Event],
) -> None:
    """Whatever the title and clip id, keys have no '..', no leading '/', no control chars."""
    uploader = handler(bucket, moto_s3, key_template="{title}/{clip_id}.{ext}")
    event = make_event(path="/small.wav", title=title, clip_id=clip_id)
    result = await uploader.handle(event, make_ctx())
    assert result is not None
    for key in (result["key"], result["cover_key"]):
        parts = key.split("/")
        assert 2 == len(parts)
        assert all(part and not part.startswith(".") for part in parts)
        assert not any(unicodedata.category(ch).startswith("C") for ch in key)
        assert len(key.encode()) <= 1024
        s3.head_object(Bucket=bucket, Key=key)
    stored = s3.head_object(Bucket=bucket, Key=result["key"])["Metadata"]["title"]
    assert stored.isascii() and title.startswith(unquote(stored).strip())


async def test_key_template_takes_the_slug(
    moto_s3: str, bucket: str, make_ctx: MakeContext, make_event: Callable[..., Event]
) -> None:
    """`{slug}` works in keys as in disk file names: ASCII, lowercase, dashes."""
    uploader = handler(bucket, moto_s3, key_template="{slug}/{clip_id}.{ext}")
    event = make_event(path="/small.wav", title="AC/DC: Back in Black! 🎸", clip_id="c1")
    result = await uploader.handle(event, make_ctx())
    assert result is not None and "ac-dc-back-in-black/c1.wav" == result["key"]


async def test_events_without_audio_are_skipped(
    moto_s3: str,
    bucket: str,
    media: Media,
    make_ctx: MakeContext,
    make_event: Callable[..., Event],
) -> None:
    """A failure has nothing to store: it is skipped and nothing is downloaded."""
    before = sum(media[1].values())
    event = make_event("song.failed", audio_url=None, image_url=None)
    result = await handler(bucket, moto_s3).handle(event, make_ctx())
    assert {"skipped": "song.failed has no audio"} == result
    assert before == sum(media[1].values())


async def test_missing_bucket_is_a_permanent_destination_error(
    moto_s3: str, make_ctx: MakeContext, make_event: Callable[..., Event]
) -> None:
    """NoSuchBucket will not fix itself; the message names code and bucket, never credentials."""
    with pytest.raises(HandlerError) as caught:
        await handler("no-such-bucket", moto_s3).handle(make_event(path="/small.wav"), make_ctx())
    error = caught.value
    assert (False, "destination") == (error.retryable, error.blame)
    assert "NoSuchBucket" in error.message and "'no-such-bucket'" in error.message
    for secret in (
        FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    ):
        assert secret not in error.message


@pytest.mark.parametrize(
    ("bucket", "retryable", "blame", "retry_after", "code"),
    [
        ("slow-down", True, "unavailable", 7.0, "SlowDown"),
        ("denied", False, "destination", None, "SignatureDoesNotMatch"),
    ],
)
async def test_store_errors_are_classified(
    bucket: str,
    retryable: bool,
    blame: str,
    retry_after: float | None,
    code: str,
    moto_s3: str,
    failing_s3: str,
    make_ctx: MakeContext,
    make_event: Callable[..., Event],
) -> None:
    """503 SlowDown is retried after Retry-After; a 403 is the destination's refusal."""
    uploader = handler(bucket, failing_s3, cover=False)
    with pytest.raises(HandlerError) as caught:
        await uploader.handle(make_event(path="/small.wav"), make_ctx())
    error = caught.value
    assert (retryable, blame, retry_after) == (error.retryable, error.blame, error.retry_after)
    assert code in error.message


async def test_unreachable_endpoint_is_retryable(
    moto_s3: str, make_ctx: MakeContext, make_event: Callable[..., Event]
) -> None:
    """Nothing listening at the endpoint is an outage: try again later."""
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(HandlerError) as caught:
        await handler("songs", closed).handle(make_event(path="/small.wav"), make_ctx())
    assert (True, "unavailable") == (caught.value.retryable, caught.value.blame)
    assert "unreachable" in caught.value.message


async def test_missing_credentials_is_a_permanent_relay_error(
    moto_s3: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_ctx: MakeContext,
    make_event: Callable[..., Event],
) -> None:
    """Without any credentials the operator must fix the relay's environment."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        empty = tmp_path / name.lower()
        empty.write_text("")
        monkeypatch.setenv(name, str(empty))
    with pytest.raises(HandlerError) as caught:
        await handler("songs", moto_s3).handle(make_event(path="/small.wav"), make_ctx())
    error = caught.value
    assert (False, "relay") == (error.retryable, error.blame)
    assert "AWS_ACCESS_KEY_ID" in error.message and "AWS_SECRET_ACCESS_KEY" in error.message


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"key_template": "{artist}/{album}/{clip_id}.{ext}"}, "{artist}, {album}"),
        ({"key_template": "{date}/{clip_id}"}, ".{ext}"),
        ({"key_template": "{title!r}.{ext}"}, "no format"),
        ({"key_template": "/abs/{clip_id}.{ext}"}, "must not start with '/'"),
        ({"key_template": "a/../{clip_id}.{ext}"}, "'..'"),
        ({"prefix": "../up/"}, "'..'"),
        ({"prefix": "songs/", "key_template": "{clip_id}.{ext}"}, "{prefix}"),
        ({"presign_expires_s": 604801}, "presign_expires_s"),
        ({"access_key_id": "AKIA"}, "secret_access_key"),
        ({"acl": "public"}, "acl"),
        ({"endpoint_url": "ftp://store"}, "endpoint_url"),
        ({"buckt": "x"}, "buckt"),
    ],
)
def test_bad_config_is_refused_naming_the_problem(options: dict[str, Any], needle: str) -> None:
    """Unknown template fields, escaping keys and bad values fail at start-up, by name."""
    with pytest.raises(pydantic.ValidationError) as caught:
        S3Handler.Config(**{"bucket": "songs", **options})
    assert needle in str(caught.value)


def test_config_hides_the_secret_and_accepts_an_empty_endpoint() -> None:
    """The secret never shows in a repr; `${S3_ENDPOINT_URL:-}` left empty means AWS."""
    config = S3Handler.Config(
        bucket="songs", access_key_id="AKIA", secret_access_key="s3cr3t", endpoint_url=""
    )
    assert "s3cr3t" not in repr(config)
    assert config.endpoint_url is None


def test_key_segment_examples() -> None:
    """Segments keep readable text and lose slashes, controls and leading dots."""
    assert ["a_b_c", "ab", "a b", "full", "untitled", "untitled", "x" * 200, "夜 の"] == [
        key_segment(v)
        for v in ["a/b\\c", "a\x00b", "  a \t  b ", "\uff46\uff55\uff4c\uff4c", "", "..", "x" * 300,
                  "夜\u3000の"]
    ]  # fmt: skip
