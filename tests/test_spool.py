"""The spool downloads each URL once per event, safely, over real HTTP on loopback."""

# STYLE.md asks for `assert expected == actual`, which ruff's SIM300 calls a Yoda condition.

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from handlers.base import HandlerError
from receiver.spool import DownloadPolicy, Spool
from tests.media_server import WAV, Media, serve_media


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
    from tests.servers import free_port

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
