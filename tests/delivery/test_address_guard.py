"""The download guard with private networks refused: every disguise of a private address, DNS
that answers differently the second time, oversize and wrong types, and the whole path through
the dispatcher and the disk handler.

Audio is served on loopback, so with RELAY_ALLOW_PRIVATE_NETWORKS=false a correct guard
refuses it; the same file fetched with the flag on proves each test can fail. A "public" host
is reached through a proxy client (the audio server acts as the proxy), and DNS answers are
changed at the event loop's `getaddrinfo`, which both the guard and httpx's connect use.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from handlers.base import HandlerError
from receiver.delivery.address_guard import is_public
from receiver.delivery.spool import DownloadPolicy, Spool
from tests.conftest import Relay, signed
from tests.media_server import WAV, Media, serve_media


@pytest.fixture(scope="module")
def audio() -> Iterator[Media]:
    """The media server of the spool tests, as this module's audio source."""
    with serve_media() as state:
        yield state


@pytest.fixture
def tag() -> str:
    return f"t={uuid.uuid4().hex}"


@pytest.fixture
async def via_proxy(audio: Media) -> AsyncIterator[httpx.AsyncClient]:
    """Every request goes to the audio server, so a public address answers on loopback."""
    async with httpx.AsyncClient(proxy=audio.url, trust_env=False) as client:
        yield client


def guarded(tmp_path: Path, client: httpx.AsyncClient, **policy: Any) -> Spool:
    """A Spool with private networks refused (the production default)."""
    options: dict[str, Any] = {"allow_private_networks": False, "connect_timeout_s": 1.0}
    return Spool(tmp_path / "spool", "evt", client, DownloadPolicy(**{**options, **policy}))


def _guard_refused(error: HandlerError) -> bool:
    """Whether the guard itself refused (not, say, an HTTP 400 from the proxy that stands in
    for the public internet, which would also be permanent)."""
    return any(why in error.message for why in ("is not a public address", "URL is not valid"))


DISGUISES = [
    "http://169.254.169.254/latest/meta-data/",
    "http://10.1.2.3:{port}/song.wav",
    "http://[::1]:{port}/song.wav",
    "http://[::ffff:127.0.0.1]:{port}/song.wav",
    "http://[::ffff:7f00:1]:{port}/song.wav",
    "http://[fec0::1]:{port}/song.wav",
    "http://0.0.0.0:{port}/song.wav",
    "http://2130706433:{port}/song.wav",
    "http://0177.0.0.1:{port}/song.wav",
    "http://0x7f.0.0.1:{port}/song.wav",
    "http://127.1:{port}/song.wav",
    "http://localhost:{port}/song.wav",
    "http://LOCALHOST:{port}/song.wav",
]


@pytest.mark.parametrize("to", DISGUISES)
async def test_redirect_to_a_disguised_private_address_is_refused(
    to: str, audio: Media, tag: str, tmp_path: Path, via_proxy: httpx.AsyncClient
) -> None:
    """A public URL redirecting to a private address in any spelling is refused for good,
    before the second request is made."""
    target = to.format(port=audio.port) + f"?{tag}"
    spool = guarded(tmp_path, via_proxy)
    with pytest.raises(HandlerError) as caught:
        await spool.fetch(str(httpx.URL("http://1.1.1.1/go", params={"to": target})))
    assert (False, True) == (caught.value.retryable, _guard_refused(caught.value)), caught.value
    assert ["/go"] == [key.split("?")[0] for key in audio.seen(tag)]


@pytest.mark.parametrize("url", DISGUISES)
async def test_disguised_private_address_is_refused_and_never_contacted(
    url: str, audio: Media, tag: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    """Asked directly, each spelling is refused for good and the loopback server sees nothing."""
    with pytest.raises(HandlerError) as caught:
        await guarded(tmp_path, http).fetch(url.format(port=audio.port) + f"?{tag}")
    assert (False, True) == (caught.value.retryable, _guard_refused(caught.value)), caught.value
    assert [] == audio.seen(tag)


NOT_GLOBAL = [
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "100.64.0.1",  # shared address space (carrier-grade NAT), RFC 6598
    "100.127.255.254",
    "127.0.0.1",
    "169.254.169.254",  # cloud metadata service
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.1",
    "192.0.2.1",
    "192.168.1.1",
    "198.18.0.1",
    "198.51.100.1",
    "203.0.113.1",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:100.64.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b:1::1",  # local-use NAT64, RFC 8215
    "100::1",  # discard prefix
    "2001::1",  # Teredo
    "2001:db8::1",  # documentation
    "2001:10::1",  # ORCHID
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of the metadata service
    "fc00::1",
    "fd00:ec2::254",  # unique local (AWS IPv6 metadata service)
    "fe80::1",
    "fec0::1",  # site-local, deprecated by RFC 3879 (security issue #12, point 10)
    "fed0::1",
    "feff:ffff::1",
    "ff02::1",
    "ff0e::1",
]
PUBLIC = [
    "1.1.1.1",
    "8.8.8.8",
    "93.184.216.34",
    "::ffff:8.8.8.8",
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "2a00:1450:4001:81b::200e",
]


@pytest.mark.parametrize("text", NOT_GLOBAL)
def test_addresses_that_are_not_globally_routable_are_not_public(text: str) -> None:
    """Every special-purpose range, and the same addresses inside IPv6 wrappers, is refused."""
    assert is_public(ipaddress.ip_address(text)) is False


@pytest.mark.parametrize("text", PUBLIC)
def test_globally_routable_unicast_addresses_are_public(text: str) -> None:
    """The control: ordinary public addresses (also IPv4-mapped) pass."""
    assert is_public(ipaddress.ip_address(text)) is True


async def test_the_same_file_is_fetched_when_private_networks_are_allowed(
    audio: Media, tag: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    """The control: with the flag on, the loopback file the tests above refuse is fetched."""
    spool = guarded(tmp_path, http, allow_private_networks=True)
    found = await spool.fetch(f"http://localhost:{audio.port}/song.wav?{tag}")
    assert WAV == found.path.read_bytes()


Answers = dict[str, list[list[str]]]


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> Callable[[Answers], list[str]]:
    """Make names resolve as given, at the running loop's getaddrinfo (used by the guard and by
    httpx's connect alike): `{name: [first answer, second answer, ...]}`, the last repeating.
    Returns the log of names looked up."""

    def install(answers: Answers) -> list[str]:
        loop = asyncio.get_running_loop()
        real = loop.getaddrinfo
        asked: list[str] = []
        calls: collections.Counter[str] = collections.Counter()

        async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else str(host)
            if name not in answers:
                return await real(host, port, *args, **kwargs)
            asked.append(name)
            script = answers[name]
            addresses = script[min(calls[name], len(script) - 1)]
            calls[name] += 1
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (a, int(port or 80)),
                )
                for a in addresses
            ]

        monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
        return asked

    return install


async def test_names_resolving_to_private_addresses_are_refused(
    fake_dns: Callable[[Answers], list[str]], audio: Media, tag: str, tmp_path: Path
) -> None:
    """A name with one private address among public ones, or only private ones, is refused."""
    fake_dns({"mixed.example": [["93.184.216.34", "127.0.0.1"]], "evil.example": [["10.0.0.7"]]})
    async with httpx.AsyncClient(trust_env=False) as client:
        for name in ("mixed.example", "evil.example"):
            with pytest.raises(HandlerError) as caught:
                await guarded(tmp_path, client).fetch(f"http://{name}:{audio.port}/song.wav?{tag}")
            assert "not a public address" in caught.value.message
    assert [] == audio.seen(tag)


async def test_dns_rebinding_cannot_steer_the_connection_to_loopback(
    fake_dns: Callable[[Answers], list[str]], audio: Media, tag: str, tmp_path: Path
) -> None:
    """The name answers a public address to the guard and 127.0.0.1 afterwards: the request
    goes to the checked public address (unreachable here), never to the loopback server."""
    asked = fake_dns({"rebind.example": [["93.184.216.34"], ["127.0.0.1"]]})
    async with httpx.AsyncClient(trust_env=False) as client:
        spool = guarded(tmp_path, client, connect_timeout_s=0.5, timeout_s=3)
        with pytest.raises(HandlerError) as caught:
            await spool.fetch(f"http://rebind.example:{audio.port}/song.wav?{tag}")
    assert [] == audio.seen(tag), "the second DNS answer was used to connect"
    assert caught.value.retryable is True  # the public address did not answer: try later
    assert ["rebind.example"] == asked


async def test_checked_address_is_used_with_the_name_kept_in_host(
    fake_dns: Callable[[Answers], list[str]],
    audio: Media,
    tag: str,
    tmp_path: Path,
    via_proxy: httpx.AsyncClient,
) -> None:
    """A public name is fetched from its checked address, resolved once, with `Host` still
    naming it (virtual hosting works)."""
    asked = fake_dns({"cdn.example": [["93.184.216.34"], ["127.0.0.1"]]})
    found = await guarded(tmp_path, via_proxy).fetch(f"http://cdn.example/song.wav?{tag}")
    assert WAV == found.path.read_bytes()
    assert {f"/song.wav?{tag}": "cdn.example"} == {key: audio.hosts[key] for key in audio.seen(tag)}
    assert ["cdn.example"] == asked


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("/big.wav", "larger than"),
        ("/endless.mp3", "larger than"),
        ("/page.html", "content type text/html"),
    ],
)
async def test_oversize_and_wrong_types_from_public_hosts_are_permanent(
    path: str, needle: str, audio: Media, tag: str, tmp_path: Path, via_proxy: httpx.AsyncClient
) -> None:
    """Declared oversize, an endless body and an HTML page: refused for good (not retried)."""
    spool = guarded(tmp_path, via_proxy, max_bytes=1024 * 1024)
    with pytest.raises(HandlerError) as caught:
        await spool.fetch(f"http://1.1.1.1{path}?{tag}")
    assert (False, True) == (caught.value.retryable, needle in caught.value.message)
    assert [] == list((tmp_path / "spool").rglob("*.mp3")) + list(
        (tmp_path / "spool").rglob("*.wav")
    )


def _callback(audio: Media, tag: str) -> dict[str, Any]:
    clip = {
        "clip_id": f"clip-{tag[2:10]}",
        "state": "succeeded",
        "title": "Loopback",
        "audio_url": f"http://127.0.0.1:{audio.port}/song.wav?{tag}",
    }
    return {"task_id": f"ext-{tag[2:14]}", "platform": "producer", "data": [clip]}


def _settled_delivery(relay: Relay, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        rows = httpx.get(f"{relay.url}/api/deliveries", headers=relay.admin, timeout=10).json()
        rows = rows.get("items", rows) if isinstance(rows, dict) else rows
        if rows and rows[0]["state"] in ("succeeded", "dead"):
            return dict(rows[0])
        assert time.monotonic() < deadline, f"delivery not settled: {rows}\n{relay.log()[-2000:]}"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("allowed", ["false", "true"])
def test_relay_records_the_refusal_as_a_permanent_delivery_error(
    allowed: str, audio: Media, tag: str, make_relay: Callable[..., Relay]
) -> None:
    """End to end (callback → store → dispatcher → disk handler → spool): with private networks
    refused the delivery is dead at once with the reason recorded and nothing fetched; with
    them allowed the same callback puts the file on disk."""
    relay = make_relay(AIMUSIC_WEBHOOK_SECRET="guard-secret", RELAY_ALLOW_PRIVATE_NETWORKS=allowed)
    headers, raw = signed(_callback(audio, tag), "guard-secret")
    answer = httpx.post(f"{relay.url}/webhooks/aimusic", content=raw, headers=headers, timeout=10)
    assert 200 == answer.status_code, answer.text
    delivery = _settled_delivery(relay)
    if allowed == "false":
        assert ("dead", 1) == (delivery["state"], delivery["attempts"])
        assert "127.0.0.1 is not a public address" in delivery["last_error"]
        assert delivery["blame"] == "relay"
        assert [] == audio.seen(tag)
        assert [] == relay.audio_files()
    else:
        assert "succeeded" == delivery["state"], delivery
        assert 1 == len(audio.seen(tag))
        [written] = relay.audio_files()
        assert WAV == written.read_bytes()
