"""The disk handler files songs and failures under its directory, safely and idempotently."""

# STYLE.md asks for `assert expected == actual`, which ruff's SIM300 calls a Yoda condition.

from __future__ import annotations

import collections
import json
import shlex
import unicodedata
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from handlers._files import AUDIO_SUFFIXES, IMAGE_SUFFIXES, slugify
from handlers.base import Handler, HandlerError
from handlers.disk import DiskHandler, safe_name
from receiver.models import Event
from tests.conftest import MakeContext
from tests.media_server import make_wav
from tests.servers import run_asgi

WAV = make_wav(b"\x01\x02" * 2000)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(1, 10))}


@pytest.fixture(scope="module")
def media() -> Iterator[tuple[str, collections.Counter[str]]]:
    """A media server on loopback and the number of requests per path."""
    hits: collections.Counter[str] = collections.Counter()

    def serve(body: bytes, media_type: str | None, status: int = 200) -> Any:
        async def endpoint(request: Request) -> Response:
            hits[request.url.path] += 1
            return Response(body, status_code=status, media_type=media_type)

        return endpoint

    async def served_as(request: Request) -> Response:
        """`/as/<name>?type=<content type>` (no type: no Content-Type header) serves the WAV."""
        hits[request.url.path] += 1
        return Response(WAV, media_type=request.query_params.get("type"))

    app = Starlette(
        routes=[
            Route("/song.wav", serve(WAV, "audio/wav")),
            Route("/cover.png", serve(PNG, "image/png")),
            Route("/noext", serve(WAV, "audio/mpeg")),
            Route("/track.flac", serve(WAV, "application/octet-stream")),
            Route("/gone.png", serve(b"", None, status=404)),
            Route("/as/{name}", served_as),
        ]
    )
    with run_asgi(app) as url:
        yield url, hits


@pytest.fixture
def songs(tmp_path: Path) -> Path:
    """The directory the handler writes to."""
    return tmp_path / "songs"


@pytest.fixture
def make_event(media: tuple[str, collections.Counter[str]]) -> Callable[..., Event]:
    """A completed song event whose clip fields can be overridden."""
    url = media[0]

    def make(kind: str = "song.completed", **clip: Any) -> Event:
        fields = {
            "title": "Night Drive",
            "audio_url": f"{url}/song.wav?token=SECRET",
            "image_url": f"{url}/cover.png?sig=SECRET",
            "lyrics": "la la la",
            "tags": "synthwave",
            "duration": 1.5,
            **clip,
        }
        return Event(
            id="evt-1",
            kind=kind,  # type: ignore[arg-type]
            task_id=str(fields.pop("task_id", "task-1")),
            clip_id=str(fields.pop("clip_id", "clip-1")),
            platform="sonic",
            clip={k: v for k, v in fields.items() if v is not None},
            source="callback",
            received_at=datetime(2024, 5, 6, 23, 30, tzinfo=UTC),
            labels={"team": "a"},
            prompt="a calm song",
            error=fields.get("error"),
        )

    return make


def disk(songs: Path, **options: Any) -> DiskHandler:
    """A disk handler writing under `songs`."""
    return DiskHandler("archive", DiskHandler.Config(path=str(songs), **options))


def listing(root: Path) -> list[str]:
    """Every file under root, relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_completed_song_is_filed_with_cover_metadata_and_lyrics(
    songs: Path, make_ctx: MakeContext, make_event: Callable[..., Event]
) -> None:
    """Audio, cover, metadata and lyrics share one stem under the rendered date folder, and the
    result names all four files (the demo and `submit --wait` list what it names)."""
    result = await disk(songs).handle(make_event(), make_ctx())
    stem = songs / "2024-05-06" / "night-drive-clip-1"
    assert {
        "path": f"{stem}.wav",
        "cover": f"{stem}.png",
        "metadata": f"{stem}.json",
        "lyrics": f"{stem}.txt",
    } == result
    assert sorted(str(Path(p).relative_to(songs)) for p in result.values()) == listing(songs)
    assert (WAV, PNG) == (Path(f"{stem}.wav").read_bytes(), Path(f"{stem}.png").read_bytes())
    assert "la la la" == Path(f"{stem}.txt").read_text()
    meta = json.loads(Path(f"{stem}.json").read_text())
    assert ("Night Drive", "task-1", "clip-1", "synthwave", 1.5, {"team": "a"}) == (
        meta["title"],
        meta["task_id"],
        meta["clip_id"],
        meta["tags"],
        meta["duration"],
        meta["labels"],
    )
    assert meta["audio_url"].endswith("/song.wav")
    assert "SECRET" not in Path(f"{stem}.json").read_text()
    assert isinstance(disk(songs), Handler)


async def test_two_handlers_of_one_event_download_once(
    tmp_path: Path,
    media: tuple[str, collections.Counter[str]],
    make_ctx: MakeContext,
    make_event: Callable[..., Event],
) -> None:
    """Two disk handlers of the same event share the spooled audio and cover."""
    before = media[1].copy()
    event, ctx = make_event(), make_ctx()
    await disk(tmp_path / "a").handle(event, ctx)
    await disk(tmp_path / "b").handle(event, make_ctx())
    seen = media[1] - before
    assert {"/song.wav": 1, "/cover.png": 1} == dict(seen)


async def test_replay_overwrites_instead_of_duplicating(
    songs: Path, tmp_path: Path, make_ctx: MakeContext, make_event: Callable[..., Event]
) -> None:
    """Replays, with the spool kept or cleaned, leave exactly one set of files."""
    handler, event = disk(songs), make_event()
    await handler.handle(event, make_ctx())
    first = listing(songs)
    await handler.handle(event, make_ctx())  # spool file and song are one inode now
    assert first == listing(songs)
    ctx = make_ctx()
    ctx.spool.cleanup()  # type: ignore[attr-defined]
    await handler.handle(event, ctx)
    assert first == listing(songs)
    assert 4 == len(first)


@pytest.mark.parametrize(
    ("title", "clip_id"),
    [
        ("../../../etc/passwd", "../../x"),
        ("/etc/passwd", "/abs/clip"),
        ("a\x00b\x07c\u202ed", "c\x00\n1"),
        ("x" * 300, "y" * 300),
        ("名前" * 200, "é" * 300),
        ("CON", "NUL"),
        ("com1.txt", "lpt9"),
        ("..", "."),
        ("   ", ""),
        (".hidden", "..\\..\\win"),
    ],
)
async def test_hostile_names_stay_inside_the_directory(
    title: str, clip_id: str, songs: Path, make_ctx: MakeContext, make_event: Callable[..., Event]
) -> None:
    """Whatever the title and clip id, every written file is a safe name inside `path`."""
    handler = disk(songs, template="{title}/{clip_id}.{ext}")
    result = await handler.handle(make_event(title=title, clip_id=clip_id), make_ctx())
    assert result is not None
    audio = Path(result["path"])
    assert songs.resolve() in audio.resolve().parents
    for name in listing(songs):
        for part in Path(name).parts:
            assert not part.startswith(".")
            assert len(part.encode()) <= 255
            assert part.split(".")[0].upper() not in RESERVED
            assert not any(unicodedata.category(ch).startswith("C") for ch in part)


def test_safe_name_examples() -> None:
    """Sanitising keeps readable names and defuses the dangerous ones."""
    assert [
        "a_b_c",
        "ab",
        "a b",
        "full",
        "_CON",
        "_com1.txt",
        "untitled",
        "untitled",
        "x" * 100,
    ] == [
        safe_name(v)
        for v in [
            "a/b\\c",
            "a\x00b",
            "  a \t  b ",
            "\uff46\uff55\uff4c\uff4c",
            "CON",
            "com1.txt",
            "",
            "..",
            "x" * 300,
        ]
    ]


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("AC/DC: Back in Black! 🎸 $HOME", "ac-dc-back-in-black-home"),
        ("Café Noir", "cafe-noir"),
        ("Ångström — Über Straße", "angstrom-uber-strasse"),
        ("Łódź, Øresund & Æsir", "lodz-oresund-aesir"),
        ("  --Night   Drive--  ", "night-drive"),
        ("$(rm -rf ~) `x`; 'y' \"z\"", "rm-rf-x-y-z"),
        ("\uff26\uff35\uff2c\uff2c \uff57\uff49\uff44\uff54\uff48 \uff12", "full-width-2"),
        ("名前", "untitled"),
        ("🎸🎸", "untitled"),
        ("", "untitled"),
        ("CON", "con"),
        ("a" * 300, "a" * 80),
    ],
)
def test_slug_is_ascii_lowercase_and_dashes(title: str, slug: str) -> None:
    """`{slug}`: accents folded (NFKD), anything but a-z and 0-9 a single dash, never empty."""
    assert slug == slugify(title)


async def test_default_names_are_shell_friendly_and_keep_the_title_in_metadata(
    songs: Path, make_ctx: MakeContext, make_event: Callable[..., Event]
) -> None:
    """The default template files `{date}/{slug}-{clip_id}.{ext}`: nothing a shell would need
    quoted, while the metadata keeps the title exactly as the provider sent it."""
    title = "AC/DC: Back in Black! 🎸 $HOME"
    result = await disk(songs).handle(make_event(title=title), make_ctx())
    stem = songs / "2024-05-06" / "ac-dc-back-in-black-home-clip-1"
    assert result is not None and f"{stem}.wav" == result["path"]
    for name in listing(songs):
        assert shlex.quote(name) == name
    assert title == json.loads(Path(f"{stem}.json").read_text())["title"]
    assert "{date}/{slug}-{clip_id}.{ext}" == DiskHandler.Config().template
    assert "songs" == DiskHandler.Config().path


async def test_title_field_still_keeps_the_readable_title(
    songs: Path, make_ctx: MakeContext, make_event: Callable[..., Event]
) -> None:
    """A template that asks for `{title}` still gets the sanitised title, spaces and all."""
    result = await disk(songs, template="{title}/{slug}.{ext}").handle(
        make_event(title="Café Noir"), make_ctx()
    )
    assert result is not None and result["path"].endswith("/Café Noir/cafe-noir.wav")


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"template": "{artist}/{title}.{ext}"}, "{artist}"),
        ({"template": "{title}-{clip_id}"}, ".{ext}"),
        ({"template": "{title!r}.{ext}"}, "no format"),
        ({"template": "{title:>300}.{ext}"}, "no format"),
        ({"template": "/srv/{title}.{ext}"}, "relative"),
        ({"template": "../{title}.{ext}"}, "relative"),
        ({"paht": "songs"}, "paht"),
    ],
)
def test_bad_config_is_refused_naming_the_problem(options: dict[str, Any], needle: str) -> None:
    """Unknown fields, a template without `.{ext}` or one that climbs out fail at start-up."""
    with pytest.raises(pydantic.ValidationError) as caught:
        DiskHandler.Config(**options)
    assert needle in str(caught.value)


async def test_failed_song_writes_a_failure_sidecar(
    songs: Path,
    media: tuple[str, collections.Counter[str]],
    make_ctx: MakeContext,
    make_event: Callable[..., Event],
) -> None:
    """A failure is visible on disk with its reason, and nothing is downloaded for it."""
    before = sum(media[1].values())
    event = make_event("song.failed", error="content policy", audio_url=None, image_url=None)
    result = await disk(songs).handle(event, make_ctx())
    failed = songs / "2024-05-06" / "night-drive-clip-1.failed.json"
    assert {"path": None, "cover": None, "metadata": str(failed), "lyrics": None} == result
    assert "content policy" == json.loads(failed.read_text())["reason"]
    assert before == sum(media[1].values())


async def test_timed_out_task_writes_a_failure_sidecar(
    songs: Path, make_ctx: MakeContext, make_event: Callable[..., Event]
) -> None:
    """A task that timed out without clips still leaves a note on disk."""
    event = make_event("task.timed_out", clip_id="-", title=None, audio_url=None)
    await disk(songs).handle(event, make_ctx())
    failed = songs / "2024-05-06" / "untitled--.failed.json"
    assert "timed out" == json.loads(failed.read_text())["reason"]


async def test_song_without_audio_url_is_a_permanent_error(
    songs: Path, make_ctx: MakeContext, make_event: Callable[..., Event]
) -> None:
    """There is nothing to save, and retrying cannot change that."""
    with pytest.raises(HandlerError) as caught:
        await disk(songs).handle(make_event(audio_url=None), make_ctx())
    assert caught.value.retryable is False


@pytest.mark.parametrize(("path", "ext"), [("/noext", "mp3"), ("/track.flac", "flac")])
async def test_extension_from_content_type_then_url(
    path: str,
    ext: str,
    songs: Path,
    media: tuple[str, collections.Counter[str]],
    make_ctx: MakeContext,
    make_event: Callable[..., Event],
) -> None:
    """audio/mpeg names an .mp3; an octet-stream keeps the URL's suffix."""
    result = await disk(songs, cover=False).handle(
        make_event(audio_url=media[0] + path), make_ctx()
    )
    assert result is not None and result["path"].endswith(f"night-drive-clip-1.{ext}")


async def test_audio_at_a_side_file_suffix_is_refused_and_nothing_is_written(
    songs: Path,
    media: tuple[str, collections.Counter[str]],
    make_ctx: MakeContext,
    make_event: Callable[..., Event],
) -> None:
    """Untyped audio at `.txt`/`.json` once became `<stem>.txt`, then the lyrics overwrote it and
    the delivery "succeeded"; now it is a permanent error naming the suffix, and no file exists."""
    for name in ("lyrics.txt", "meta.json"):
        audio_url = f"{media[0]}/as/{name}?type=application/octet-stream"
        with pytest.raises(HandlerError) as caught:
            await disk(songs).handle(make_event(audio_url=audio_url), make_ctx())
        suffix = name.rsplit(".", 1)[1]
        assert (False, True) == (caught.value.retryable, f".{suffix}" in caught.value.message)
        assert "application/octet-stream" in caught.value.message
        assert not songs.exists()


@pytest.mark.parametrize(
    "audio",
    ["page.html?type=application/octet-stream", "run.sh", "art.svg?type=binary/octet-stream"],
)
async def test_untyped_audio_with_a_non_audio_suffix_is_refused(
    audio: str,
    songs: Path,
    media: tuple[str, collections.Counter[str]],
    make_ctx: MakeContext,
    make_event: Callable[..., Event],
) -> None:
    """A generic or missing content type lets only an allowed audio suffix name the file."""
    event = make_event(audio_url=f"{media[0]}/as/{audio}")
    with pytest.raises(HandlerError) as caught:
        await disk(songs).handle(event, make_ctx())
    suffix = audio.split("?")[0].rsplit(".", 1)[1]
    assert (False, True) == (caught.value.retryable, f".{suffix}" in caught.value.message)
    assert "mp3" in caught.value.message  # it says what would have been accepted
    assert not songs.exists()


async def test_audio_of_a_non_audio_type_is_refused_whatever_its_suffix(
    songs: Path,
    media: tuple[str, collections.Counter[str]],
    make_ctx: MakeContext,
    make_event: Callable[..., Event],
) -> None:
    """An SVG (a document that can carry script) at `song.mp3` is refused, naming its type."""
    event = make_event(audio_url=f"{media[0]}/as/song.mp3?type=image/svg%2Bxml")
    with pytest.raises(HandlerError) as caught:
        await disk(songs).handle(event, make_ctx())
    assert (False, True) == (caught.value.retryable, "image/svg+xml" in caught.value.message)
    assert not songs.exists()


async def test_audio_type_names_the_file_whatever_the_url_says(
    songs: Path,
    media: tuple[str, collections.Counter[str]],
    make_ctx: MakeContext,
    make_event: Callable[..., Event],
) -> None:
    """audio/mpeg at a URL ending `.txt` is saved as `.mp3`, and the lyrics keep their own file."""
    event = make_event(audio_url=f"{media[0]}/as/lyrics.txt?type=audio/mpeg")
    result = await disk(songs).handle(event, make_ctx())
    stem = songs / "2024-05-06" / "night-drive-clip-1"
    assert result is not None and f"{stem}.mp3" == result["path"]
    assert (WAV, "la la la") == (Path(f"{stem}.mp3").read_bytes(), Path(f"{stem}.txt").read_text())


@pytest.mark.parametrize(
    "ext", ["mp3", "m4a", "mp4", "aac", "wav", "flac", "ogg", "oga", "opus", "webm"]
)
async def test_every_allowed_audio_suffix_is_kept_beside_its_side_files(
    ext: str,
    songs: Path,
    media: tuple[str, collections.Counter[str]],
    make_ctx: MakeContext,
    make_event: Callable[..., Event],
) -> None:
    """Untyped audio at an allowed suffix keeps it, and never shares a name with a side file."""
    event = make_event(audio_url=f"{media[0]}/as/song.{ext}?type=application/octet-stream")
    result = await disk(songs).handle(event, make_ctx())
    stem = "2024-05-06/night-drive-clip-1"
    assert result is not None and result["path"].endswith(f"{stem}.{ext}")
    assert sorted(f"{stem}.{e}" for e in (ext, "png", "json", "txt")) == listing(songs)
    assert (WAV, "la la la") == (
        Path(result["path"]).read_bytes(),
        (songs / f"{stem}.txt").read_text(),
    )


def test_audio_cover_and_side_file_suffixes_never_meet() -> None:
    """A song, its cover, its metadata and its lyrics can never be given one name."""
    side_files = {"json", "txt", "failed.json"}
    assert (set(), set(), set()) == (
        AUDIO_SUFFIXES & IMAGE_SUFFIXES,
        AUDIO_SUFFIXES & side_files,
        IMAGE_SUFFIXES & side_files,
    )


@pytest.mark.parametrize(
    ("image", "cover"),
    [
        ("art.svg?type=image/svg%2Bxml", None),
        ("art.svg?type=application/octet-stream", None),
        ("cover.html?type=application/octet-stream", None),
        ("cover.txt", None),
        ("cover.jpeg?type=application/octet-stream", "jpeg"),
        ("cover?type=image/webp", "webp"),
    ],
)
async def test_cover_gets_only_an_image_suffix(
    image: str,
    cover: str | None,
    songs: Path,
    media: tuple[str, collections.Counter[str]],
    make_ctx: MakeContext,
    make_event: Callable[..., Event],
) -> None:
    """A cover that is not a raster image by type or suffix is skipped; the song is still filed."""
    result = await disk(songs).handle(make_event(image_url=f"{media[0]}/as/{image}"), make_ctx())
    stem = "2024-05-06/night-drive-clip-1"
    assert result is not None and WAV == Path(result["path"]).read_bytes()
    expected = sorted(f"{stem}.{e}" for e in ("wav", "json", "txt", *([cover] if cover else [])))
    assert expected == listing(songs)
    assert (str(songs.resolve() / f"{stem}.{cover}") if cover else None) == result["cover"]


async def test_missing_cover_does_not_lose_the_song(
    songs: Path,
    media: tuple[str, collections.Counter[str]],
    make_ctx: MakeContext,
    make_event: Callable[..., Event],
) -> None:
    """A cover the source no longer has is skipped; the audio is still filed."""
    result = await disk(songs).handle(make_event(image_url=media[0] + "/gone.png"), make_ctx())
    assert result is not None and result["cover"] is None
    assert WAV == Path(result["path"]).read_bytes()


async def test_symlink_out_of_the_directory_is_refused(
    songs: Path, tmp_path: Path, make_ctx: MakeContext, make_event: Callable[..., Event]
) -> None:
    """A rendered path that resolves outside `path` (here through a symlink) is never written."""
    outside = tmp_path / "outside"
    outside.mkdir()
    songs.mkdir()
    (songs / "2024-05-06").symlink_to(outside, target_is_directory=True)
    with pytest.raises(HandlerError) as caught:
        await disk(songs).handle(make_event(), make_ctx())
    assert (False, []) == (caught.value.retryable, listing(outside))


async def test_long_values_in_one_name_are_shortened_deterministically(
    songs: Path, make_ctx: MakeContext, make_event: Callable[..., Event]
) -> None:
    """Long values in one file name still fit the file system; a replay hits the same name."""
    handler = disk(songs, template="{title}-{task_id}-{clip_id}-{platform}.{ext}")
    event = make_event(title="t" * 300, task_id="k" * 300, clip_id="名" * 300)
    first = await handler.handle(event, make_ctx())
    again = await handler.handle(event, make_ctx())
    assert first is not None and first == again
    assert all(len(part.encode()) <= 255 for name in listing(songs) for part in Path(name).parts)
    assert 4 == len(listing(songs))


def assert_safe_component(part: str) -> None:
    """What every written path component must be, on Linux, macOS and Windows alike."""
    assert part and not part.startswith((".", "-")), part
    assert not part.endswith((".", " ")), part
    assert len(part.encode()) <= 255, part
    assert part.split(".")[0].strip().upper() not in RESERVED | {"CONIN$", "CONOUT$"}, part
    assert not any(unicodedata.category(ch).startswith("C") for ch in part), part
    assert not set('/\\<>:"|?*') & set(part), part


@pytest.mark.parametrize(
    ("title", "clip_id"),
    [
        ("CON.", "nul "),
        ("COM1 .txt", "LPT0"),
        ("CONIN$", "aux.tar.gz"),
        ("-rf", "--help"),
        ("trailing. . ", "dots..."),
        ("{clip_id}", "{0}"),
        ("{title.__class__.__mro__}", "{ext}"),
        ("é" * 128, "名" * 90),
        ("x" * 255, "e\u0301" * 200),
        ("a/../../b", "C:\\Windows\\win.ini"),
    ],
)
async def test_more_hostile_names_stay_inside_and_are_portable(
    title: str, clip_id: str, songs: Path, make_ctx: MakeContext, make_event: Callable[..., Event]
) -> None:
    """Reserved names with dots and spaces, leading dashes, template braces and 255-byte
    multi-byte values: every component is portable and braces are written, not expanded."""
    handler = disk(songs, template="{title}/{clip_id}-{title}.{ext}")
    result = await handler.handle(make_event(title=title, clip_id=clip_id), make_ctx())
    assert result is not None
    audio = Path(result["path"])
    assert audio.is_file() and songs.resolve() in audio.resolve().parents
    for name in listing(songs):
        for part in Path(name).parts:
            assert_safe_component(part)
    if "{" in title:
        assert title in audio.parent.name  # the value's braces are text, not a template field


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    # one songs directory and media server serve every example; nothing is reset between them
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    title=st.text(st.characters(codec=None), max_size=300),
    clip_id=st.text(st.characters(codec=None), max_size=200),
    template=st.sampled_from(
        [
            "{date}/{slug}-{clip_id}.{ext}",
            "{date}/{title}-{clip_id}.{ext}",
            "{title}/{clip_id}.{ext}",
            "{clip_id}{title}.{ext}",
        ]
    ),
)
async def test_any_title_and_clip_id_land_inside_the_directory(
    title: str,
    clip_id: str,
    template: str,
    songs: Path,
    make_ctx: MakeContext,
    make_event: Callable[..., Event],
) -> None:
    """Property: for any title and clip id (any code point, surrogates included) the audio is
    written, inside `path`, under portable component names."""
    result = await disk(songs, template=template).handle(
        make_event(title=title, clip_id=clip_id), make_ctx()
    )
    assert result is not None
    audio = Path(result["path"])
    assert audio.is_file()
    assert songs.resolve() in audio.resolve().parents
    for part in audio.relative_to(songs.resolve()).parts:
        assert_safe_component(part)
