"""The spool downloads each URL once per event, safely, over real HTTP on loopback."""

# STYLE.md asks for `assert expected == actual`, which ruff's SIM300 calls a Yoda condition.

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from handlers.base import HandlerError
from receiver.delivery.spool import DownloadPolicy, Spool, SpoolSweep, sweep_stale
from tests.conftest import REPO
from tests.media_server import WAV, Media, serve_media
from tests.servers import Process, free_port


@pytest.fixture(scope="module")
def media() -> Iterator[Media]:
    """One media server for the whole module; tests keep apart by unique query strings."""
    with serve_media() as state:
        yield state


@pytest.fixture
def tag() -> str:
    """A query string unique to one test, so hit counts and spool names never collide."""
    return f"t={uuid.uuid4().hex}"


MakeSpool = Callable[..., Spool]


@pytest.fixture
def make_spool(tmp_path: Path, http: httpx.AsyncClient) -> MakeSpool:
    """Build a Spool under tmp_path; loopback is allowed unless the test says otherwise."""

    def make(
        event_id: str = "evt-1", client: httpx.AsyncClient | None = None, **policy: Any
    ) -> Spool:
        options = {"allow_private_networks": True, **policy}
        return Spool(tmp_path / "spool", event_id, client or http, DownloadPolicy(**options))

    return make


def files_in(root: Path) -> list[str]:
    """Every file under root, relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_fetch_streams_the_file_to_the_event_directory(
    media: Media, tag: str, make_spool: MakeSpool, tmp_path: Path
) -> None:
    """A fetched file has the served bytes, size and media type, inside the event's directory."""
    found = await make_spool().fetch(f"{media.url}/song.wav?{tag}")
    assert WAV == found.path.read_bytes()
    assert (len(WAV), "audio/wav") == (found.size, found.content_type)
    assert tmp_path / "spool" / "evt-1" == found.path.parent
    assert found.path.suffix == ".wav"
    assert found.path.with_name(found.path.name + ".meta.json").is_file()


async def test_concurrent_and_later_fetches_download_once(
    media: Media, tag: str, make_spool: MakeSpool
) -> None:
    """Two spools of one event fetching at once, then a fresh one, cause a single request."""
    url = f"{media.url}/song.wav?{tag}"
    first, second = make_spool(), make_spool()
    found = await asyncio.gather(first.fetch(url), second.fetch(url), first.fetch(url))
    later = await make_spool().fetch(url)
    assert 1 == media.hits[f"/song.wav?{tag}"]
    assert {later.path} == {f.path for f in found}


async def test_damaged_spool_file_is_downloaded_again(
    media: Media, tag: str, make_spool: MakeSpool
) -> None:
    """A spool file whose size disagrees with its sidecar is not trusted."""
    url = f"{media.url}/song.wav?{tag}"
    found = await make_spool().fetch(url)
    found.path.write_bytes(b"trunc")
    again = await make_spool().fetch(url)
    assert (2, WAV) == (media.hits[f"/song.wav?{tag}"], again.path.read_bytes())


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://localhost:9/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x",
        "http://100.64.0.1/x",
        "http://0.0.0.0:9/x",
        "http://224.0.0.1/x",
        "http://2130706433:9/x",
        "http://[::1]:9/x",
        "http://[::ffff:127.0.0.1]:9/x",
        "http://[fe80::1]/x",
        "http://[fd00::1]/x",
    ],
)
async def test_private_addresses_are_refused(url: str, make_spool: MakeSpool) -> None:
    """Hosts resolving to loopback, private, link-local or special addresses are never contacted."""
    spool = make_spool(allow_private_networks=False, connect_timeout_s=0.5, timeout_s=2)
    with pytest.raises(HandlerError) as caught:
        await spool.fetch(url)
    assert (False, True) == (caught.value.retryable, "not a public address" in caught.value.message)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/a.mp3", "gopher://x/", "http:///nohost"]
)
async def test_other_schemes_are_refused(url: str, make_spool: MakeSpool) -> None:
    """Only http and https URLs are fetched."""
    with pytest.raises(HandlerError) as caught:
        await make_spool().fetch(url)
    assert caught.value.retryable is False


@pytest.fixture
async def via_proxy(media: Media) -> AsyncIterator[httpx.AsyncClient]:
    """A client sending every request to the media server, so a public IP answers on loopback."""
    async with httpx.AsyncClient(proxy=media.url, trust_env=False) as client:
        yield client


async def test_public_host_passes_the_guard(
    media: Media, tag: str, make_spool: MakeSpool, via_proxy: httpx.AsyncClient
) -> None:
    """With private networks refused, a public address is still fetched."""
    found = await make_spool(client=via_proxy, allow_private_networks=False).fetch(
        f"http://1.1.1.1/song.wav?{tag}"
    )
    assert WAV == found.path.read_bytes()


@pytest.mark.parametrize(
    "to", ["http://169.254.169.254/latest/meta-data/", "http://localhost:{port}/song.wav"]
)
async def test_every_redirect_hop_is_checked(
    media: Media, tag: str, to: str, make_spool: MakeSpool, via_proxy: httpx.AsyncClient
) -> None:
    """A public first hop redirecting to a private address is refused before the second request."""
    target = to.format(port=media.url.rsplit(":", 1)[1]) + f"?{tag}"
    spool = make_spool(client=via_proxy, allow_private_networks=False)
    with pytest.raises(HandlerError) as caught:
        await spool.fetch(str(httpx.URL("http://1.1.1.1/go", params={"to": target})))
    assert caught.value.retryable is False
    assert "not a public address" in caught.value.message
    assert [] == [key for key in media.hits if tag in key and not key.startswith("/go")]


async def test_redirects_are_followed_up_to_the_limit(
    media: Media, tag: str, make_spool: MakeSpool
) -> None:
    """Three redirects arrive at the file; six, with a limit of five, are refused."""
    found = await make_spool().fetch(f"{media.url}/redirect/3?{tag}")
    assert WAV == found.path.read_bytes()
    with pytest.raises(HandlerError) as caught:
        await make_spool(max_redirects=5).fetch(f"{media.url}/redirect/6?{tag}")
    assert (False, True) == (caught.value.retryable, "redirects" in caught.value.message)


async def test_content_length_over_the_cap_is_refused(
    media: Media, tag: str, make_spool: MakeSpool, tmp_path: Path
) -> None:
    """A declared size over max_bytes fails permanently and leaves no file."""
    with pytest.raises(HandlerError) as caught:
        await make_spool(max_bytes=1000, read_timeout_s=0.5).fetch(f"{media.url}/big.wav?{tag}")
    assert (False, True) == (
        caught.value.retryable,
        "larger than 1000 bytes" in caught.value.message,
    )
    assert [] == files_in(tmp_path / "spool")


async def test_endless_body_is_cut_off_at_the_cap(
    media: Media, make_spool: MakeSpool, tmp_path: Path
) -> None:
    """A chunked body without end stops just past max_bytes; the server sees the hang-up."""
    media.endless_closed.clear()
    with pytest.raises(HandlerError) as caught:
        await make_spool(max_bytes=256 * 1024, timeout_s=5).fetch(f"{media.url}/endless.mp3")
    assert caught.value.retryable is False
    assert await asyncio.to_thread(media.endless_closed.wait, 5)
    assert media.endless_sent[0] < 32 * 1024 * 1024
    assert [] == files_in(tmp_path / "spool")


async def test_wrong_content_type_is_refused_and_missing_one_allowed(
    media: Media, tag: str, make_spool: MakeSpool
) -> None:
    """An HTML page is not a song; a body without a content type is accepted."""
    with pytest.raises(HandlerError) as caught:
        await make_spool().fetch(f"{media.url}/page.html?{tag}")
    assert (False, True) == (caught.value.retryable, "text/html" in caught.value.message)
    found = await make_spool().fetch(f"{media.url}/untyped?{tag}")
    assert (WAV, None) == (found.path.read_bytes(), found.content_type)


async def test_whole_download_timeout_is_retryable(
    media: Media, tag: str, make_spool: MakeSpool, tmp_path: Path
) -> None:
    """A source slower than timeout_s is reported as unavailable, to be retried."""
    with pytest.raises(HandlerError) as caught:
        await make_spool(timeout_s=0.2).fetch(f"{media.url}/slow.wav?{tag}")
    assert (True, "unavailable") == (caught.value.retryable, caught.value.blame)


async def test_stalled_body_hits_the_read_timeout(
    media: Media, tag: str, make_spool: MakeSpool, tmp_path: Path
) -> None:
    """A body that stops arriving fails after read_timeout_s and leaves no partial file."""
    with pytest.raises(HandlerError) as caught:
        await make_spool(read_timeout_s=0.2).fetch(f"{media.url}/stall.wav?{tag}")
    assert (True, "unavailable") == (caught.value.retryable, caught.value.blame)
    assert [] == files_in(tmp_path / "spool")


async def test_server_error_is_retryable_then_succeeds(
    media: Media, tag: str, make_spool: MakeSpool
) -> None:
    """A 500 is retryable; the next attempt downloads the file."""
    spool = make_spool()
    with pytest.raises(HandlerError) as caught:
        await spool.fetch(f"{media.url}/flaky.wav?{tag}")
    assert (True, "unavailable") == (caught.value.retryable, caught.value.blame)
    assert WAV == (await spool.fetch(f"{media.url}/flaky.wav?{tag}")).path.read_bytes()


async def test_rate_limit_carries_retry_after(
    media: Media, tag: str, make_spool: MakeSpool
) -> None:
    """A 429 with Retry-After is retried no sooner than the source asked."""
    with pytest.raises(HandlerError) as caught:
        await make_spool().fetch(f"{media.url}/limited.wav?{tag}")
    assert (True, 7.0) == (caught.value.retryable, caught.value.retry_after)


async def test_client_error_is_permanent_and_hides_the_query(
    media: Media, make_spool: MakeSpool
) -> None:
    """A 404 is not retried, and the message names the host but never the signed query."""
    with pytest.raises(HandlerError) as caught:
        await make_spool().fetch(f"{media.url}/missing.wav?token=SECRET-TOKEN")
    assert caught.value.retryable is False
    assert "127.0.0.1" in caught.value.message and "404" in caught.value.message
    assert "SECRET" not in caught.value.message


async def test_unreachable_source_is_retryable(make_spool: MakeSpool) -> None:
    """A refused connection is reported as unavailable, to be retried."""

    with pytest.raises(HandlerError) as caught:
        await make_spool().fetch(f"http://127.0.0.1:{free_port()}/a.wav")
    assert (True, "unavailable") == (caught.value.retryable, caught.value.blame)


async def test_event_id_cannot_leave_the_root_and_cleanup_removes_it(
    media: Media, tag: str, make_spool: MakeSpool, tmp_path: Path
) -> None:
    """A hostile event id still spools inside the root, and cleanup removes only that event."""
    other = await make_spool("evt-2").fetch(f"{media.url}/cover.png?{tag}")
    spool = make_spool("../../escape/..")
    found = await spool.fetch(f"{media.url}/cover.png?{tag}")
    root = (tmp_path / "spool").resolve()
    assert root in found.path.resolve().parents
    spool.cleanup()
    assert (False, True) == (found.path.exists(), other.path.exists())


STALE_S = 2 * 24 * 3600
"""Older than the sweep's threshold (a day) by a wide margin."""


def make_spool_entry(root: Path, name: str, age_s: float = 0.0, part: bool = False) -> Path:
    """An event's spool folder as a download leaves it (file, sidecar, or a half-written
    `.part`), with every mtime set `age_s` seconds in the past."""
    folder = root / name
    folder.mkdir(parents=True)
    if part:
        (folder / ".0123456789abcdef.wav.a1b2c3d4e5f6.part").write_bytes(b"half")
    else:
        (folder / "0123456789abcdef.wav").write_bytes(WAV)
        (folder / "0123456789abcdef.wav.meta.json").write_text('{"size": 1}')
    then = time.time() - age_s
    for path in [*folder.iterdir(), folder]:
        os.utime(path, (then, then))
    return folder


@pytest.mark.parametrize("verb", ["worker", "serve"])
def test_start_up_removes_stale_spool_folders_and_keeps_fresh_ones(
    tmp_path: Path, verb: str
) -> None:
    """A folder left by a kill -9 a day ago is swept when `aimusic-relay worker` (or `serve`,
    whose dispatcher runs in-process on SQLite) starts; a folder touched a moment ago (a
    download in flight in another process) is kept."""
    root = tmp_path / "spool"
    stale = make_spool_entry(root, uuid.uuid4().hex, age_s=STALE_S, part=True)
    fresh = make_spool_entry(root, uuid.uuid4().hex, part=True)
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}",
        "RELAY_SPOOL_DIR": str(root),
        "AIMUSIC_BASE_URL": "http://127.0.0.1:9",
        "RELAY_LOG_FORMAT": "json",
        "PYTHONPATH": str(REPO),
    }
    args = ["serve", "--port", str(free_port())] if verb == "serve" else ["worker"]
    worker = Process(args, env, tmp_path, tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 30
        while "dispatcher started" not in worker.output():
            assert worker.popen.poll() is None, worker.output()
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.05)
    finally:
        code = worker.stop()  # uvicorn (serve) ends a SIGTERM with the signal's own status
        assert code in ((0,) if verb == "worker" else (0, -15)), worker.output()
    assert (False, True) == (stale.exists(), fresh.exists()), worker.output()
    [swept] = [json.loads(line) for line in worker.output().splitlines() if "spool swept" in line]
    assert ([stale.name], 1) == (swept["removed"], swept["count"])


def age(path: Path, age_s: float) -> None:
    """Set `path`'s mtime `age_s` seconds in the past."""
    then = time.time() - age_s
    os.utime(path, (then, then), follow_symlinks=False)


async def test_a_real_spool_folder_is_swept_once_stale(
    media: Media, tag: str, make_spool: MakeSpool, tmp_path: Path
) -> None:
    """The folder a real download leaves (file and sidecar) is recognised and removed once it
    is a day old, and the bytes it held are counted."""
    found = await make_spool("evt-old").fetch(f"{media.url}/song.wav?{tag}")
    await make_spool("evt-new").fetch(f"{media.url}/song.wav?{tag}")
    root = tmp_path / "spool"
    for path in [*found.path.parent.iterdir(), found.path.parent]:
        age(path, STALE_S)
    swept = sweep_stale(root)
    assert ("evt-old",) == swept.removed
    assert len(WAV) < swept.freed_bytes < len(WAV) + 200  # the file and its small sidecar
    assert ["evt-new"] == sorted(p.name for p in root.iterdir())


def test_a_download_in_flight_keeps_an_old_folder(tmp_path: Path) -> None:
    """A folder made long ago whose `.part` file is still being written is not stale."""
    folder = make_spool_entry(tmp_path, "evt-busy", age_s=STALE_S, part=True)
    part = next(folder.iterdir())
    with part.open("ab") as handle:
        handle.write(b"more")
    assert SpoolSweep() == sweep_stale(tmp_path)
    assert part.exists()


def test_only_folders_shaped_like_the_spool_are_touched(tmp_path: Path) -> None:
    """A mistaken RELAY_SPOOL_DIR loses nothing: old folders holding other files, subfolders,
    hidden folders, plain files and symlinks stay; only the spool's own folder goes."""
    notes = tmp_path / "Documents"
    notes.mkdir()
    (notes / "notes.txt").write_text("keep me")
    nested = make_spool_entry(tmp_path, "nested")
    (nested / "fedcba9876543210.mp3").mkdir()  # a folder, though named like a download
    hidden = make_spool_entry(tmp_path, ".cache")
    (tmp_path / "0123456789abcdef.wav").write_bytes(WAV)
    outside = make_spool_entry(tmp_path / "elsewhere", "evt-linked", age_s=STALE_S)
    (tmp_path / "evt-link").symlink_to(outside, target_is_directory=True)
    make_spool_entry(tmp_path, "evt-dead", age_s=STALE_S)
    for path in tmp_path.rglob("*"):
        age(path, STALE_S)
    swept = sweep_stale(tmp_path)
    assert SpoolSweep(("evt-dead",), len(WAV) + len('{"size": 1}')) == swept
    kept = [notes, nested, hidden, tmp_path / "0123456789abcdef.wav", tmp_path / "evt-link"]
    assert all(p.exists() for p in [*kept, outside / "0123456789abcdef.wav"])


def test_a_missing_spool_directory_is_nothing_to_sweep(tmp_path: Path) -> None:
    """Before the first download there is no spool directory, and that is not an error."""
    assert SpoolSweep() == sweep_stale(tmp_path / "never-made")
