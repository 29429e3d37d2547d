"""Download each URL of an event once, to a local file that every handler of that event reads.

Audio can be hundreds of megabytes and the URL comes from a third party, so a download is
streamed to disk (memory stays flat), capped in size and time, limited to media content types,
and refused when the host resolves to an address that is not globally routable (SSRF guard).

The finished file lives at `root/<event id>/<sha256(url)[:16]><ext>` next to a `.meta.json`
sidecar; the sidecar is written last, so its presence means the file is complete and any later
call (another handler, a retry, another process) reuses it instead of downloading again.
An event's folder is removed when its last delivery finishes; `sweep_stale` removes those a
crash left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import time
import weakref
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import urlsplit

import httpx

from handlers.base import HandlerError, SpooledFile
from receiver.delivery.address_guard import checked_address, invalid, pinned_request, where
from receiver.retry import parse_retry_after

__all__ = ["STALE_AFTER_S", "DownloadPolicy", "Spool", "SpoolSweep", "sweep_stale"]

_ALLOWED_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})
_ALLOWED_FAMILIES = ("audio/", "image/", "video/")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_WRITE_BUFFER = 1024 * 1024
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,80}")
_FILE_NAME = re.compile(r"\.?[0-9a-f]{16}(\.[a-z0-9]{1,8})?(\.meta\.json)?(\.[0-9a-f]{12}\.part)?")

STALE_AFTER_S = 24 * 3600.0
"""A spool folder untouched this long is an orphan: far above one delivery's life (a download
is cut off at 300 s, a handler at its timeout, 120 s by default) and the default retry span."""

# A Spool serves one event, and the dispatcher may build one per delivery, so the lock that
# makes concurrent fetches of one URL download once must be shared by every Spool in the
# process. Keyed by (event loop, file path); an entry lives only while a fetch holds it.
_LOCKS: weakref.WeakValueDictionary[tuple[int, str], asyncio.Lock] = weakref.WeakValueDictionary()


@dataclasses.dataclass(frozen=True, slots=True)
class DownloadPolicy:
    """Limits for every download; `allow_private_networks` is for the sandbox and tests only."""

    allow_private_networks: bool = False
    max_bytes: int = 512 * 1024 * 1024
    timeout_s: float = 300.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    max_redirects: int = 5


class Spool:
    """The shared download area of ONE event (implements `handlers.base.SpoolAccess`).

    Every hop of a download (the URL and each redirect) is resolved once with `getaddrinfo`
    and refused if any address is not public; the request then goes to the checked address
    itself (the name kept in `Host` and in TLS SNI, so virtual hosts and certificate checks
    still work). Resolving again at connect time would let a DNS server that answers
    differently the second time (DNS rebinding) steer the connection to a private address.
    """

    def __init__(
        self, root: Path, event_id: str, http: httpx.AsyncClient, policy: DownloadPolicy
    ) -> None:
        self._root = root
        self._event_id = event_id
        self._http = http
        self._policy = policy

    @functools.cached_property
    def _dir(self) -> Path:
        """Worked out on first use: most deliveries never touch their spool, and building
        the path was a tenth of a no-op delivery's cost."""
        return Path(self._root).absolute() / _safe_component(self._event_id)

    async def fetch(self, url: str) -> SpooledFile:
        """Return the spooled copy of `url`, downloading it first unless it is already there."""
        target = self._dir / (hashlib.sha256(url.encode()).hexdigest()[:16] + _url_suffix(url))
        key = (id(asyncio.get_running_loop()), str(target))
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = asyncio.Lock()
        async with lock:
            found = _load_finished(target, url)
            if found is not None:
                return found
            try:
                async with asyncio.timeout(self._policy.timeout_s):
                    return await self._download(url, target)
            except (TimeoutError, httpx.TimeoutException) as exc:
                raise HandlerError(
                    f"download from {where(url)} timed out", blame="unavailable"
                ) from exc
            except httpx.InvalidURL as exc:
                raise invalid() from exc
            except httpx.RemoteProtocolError as exc:
                # httpx reads every Location as it arrives; one it cannot parse (such as the
                # octal IP http://0177.0.0.1/) is a refusal, not a fault worth retrying.
                if "location header" in str(exc):
                    raise invalid() from exc
                raise HandlerError(
                    f"download from {where(url)} failed: {type(exc).__name__}",
                    blame="unavailable",
                ) from exc
            except httpx.HTTPError as exc:  # connection refused or reset, protocol errors
                raise HandlerError(
                    f"download from {where(url)} failed: {type(exc).__name__}",
                    blame="unavailable",
                ) from exc

    def exists(self) -> bool:
        """Whether anything was spooled for this event (most events download nothing, and
        then no thread is needed to clean up)."""
        return self._dir.exists()

    def cleanup(self) -> None:
        """Remove this event's spool directory once all its deliveries are finished."""
        shutil.rmtree(self._dir, ignore_errors=True)

    async def _download(self, url: str, target: Path) -> SpooledFile:
        current = url
        for _hop in range(self._policy.max_redirects + 1):
            address = await checked_address(current, self._policy.allow_private_networks)
            timeout = httpx.Timeout(
                self._policy.read_timeout_s,
                connect=self._policy.connect_timeout_s,
                pool=self._policy.connect_timeout_s,
            )
            pinned, headers, extensions = pinned_request(current, address)
            request = self._http.build_request(
                "GET",
                pinned,
                headers={"Accept-Encoding": "identity", **headers},
                timeout=timeout,
                extensions=extensions,
            )
            response = await self._http.send(request, stream=True, follow_redirects=False)
            try:
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    current = str(httpx.URL(current).join(location))
                    continue
                _check_response(response, current, self._policy.max_bytes)
                return await self._save(response, url, target)
            finally:
                await response.aclose()
        raise HandlerError(
            f"download from {where(url)} refused: more than {self._policy.max_redirects} redirects",
            retryable=False,
        )

    async def _save(self, response: httpx.Response, url: str, target: Path) -> SpooledFile:
        """Stream the body to a unique temp file, then rename it into place and write the meta."""
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
        size = 0
        try:
            handle: IO[bytes] = await asyncio.to_thread(temp.open, "wb")
            with handle:
                buffer = bytearray()
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self._policy.max_bytes:
                        raise _too_big(url, self._policy.max_bytes)
                    buffer += chunk
                    if len(buffer) >= _WRITE_BUFFER:
                        await asyncio.to_thread(handle.write, bytes(buffer))
                        buffer.clear()
                await asyncio.to_thread(handle.write, bytes(buffer))
            os.replace(temp, target)
        finally:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
        found = SpooledFile(url=url, path=target, size=size, content_type=_media_type(response))
        _store_meta(target, found)
        return found


@dataclasses.dataclass(frozen=True, slots=True)
class SpoolSweep:
    """What `sweep_stale` did: folders removed (event ids), their bytes, and failures."""

    removed: tuple[str, ...] = ()
    freed_bytes: int = 0
    failed: tuple[str, ...] = ()


def sweep_stale(root: Path, older_than_s: float = STALE_AFTER_S) -> SpoolSweep:
    """Remove event folders under `root` that nothing has written for `older_than_s`: a kill -9
    mid-download leaves a folder whose event may settle elsewhere, so nothing else removes it.

    Beside other live workers sharing `root` this is safe by age, not by lock files or pids (a
    pid means nothing across containers sharing a volume, and a lock would have to be held by
    the dispatcher for each delivery). A folder's age is that of its newest entry: a download
    in flight has created or written its `.part` file within its limit (300 s), and a handler
    reads a finished file within its timeout, so a day's idleness means no one is using it;
    a delivery that does come back after that downloads again. Only folders shaped like the
    spool's own (a name `Spool` makes, holding only files named like its downloads, sidecars
    and parts) are touched, so a mistaken RELAY_SPOOL_DIR such as a home directory loses
    nothing. Blocking: run it in a thread.
    """
    removed: list[str] = []
    failed: list[str] = []
    freed = 0
    cutoff = time.time() - older_than_s
    try:
        with os.scandir(root) as found:
            entries = list(found)
    except OSError:
        return SpoolSweep()
    for entry in entries:
        try:
            sizes = _spool_folder(entry, cutoff)
            if sizes is None:
                continue
            shutil.rmtree(entry.path)
        except OSError:
            failed.append(entry.name)
            continue
        removed.append(entry.name)
        freed += sum(sizes)
    return SpoolSweep(tuple(sorted(removed)), freed, tuple(sorted(failed)))


def _spool_folder(entry: os.DirEntry[str], cutoff: float) -> list[int] | None:
    """The file sizes of `entry` if it is a spool folder last written before `cutoff`."""
    if not (entry.is_dir(follow_symlinks=False) and _FOLDER_NAME.fullmatch(entry.name)):
        return None
    newest = entry.stat(follow_symlinks=False).st_mtime
    sizes = []
    with os.scandir(entry.path) as children:
        for child in children:
            if not (child.is_file(follow_symlinks=False) and _FILE_NAME.fullmatch(child.name)):
                return None
            info = child.stat(follow_symlinks=False)
            newest = max(newest, info.st_mtime)
            sizes.append(info.st_size)
    return sizes if newest < cutoff else None


def _check_response(response: httpx.Response, url: str, max_bytes: int) -> None:
    """Turn a status, size or type we will not accept into a `HandlerError`."""
    status = response.status_code
    source = where(url)
    if status == 429 or status >= 500:
        raise HandlerError(
            f"download from {source} failed: HTTP {status}",
            retry_after=parse_retry_after(response.headers.get("retry-after"))
            if status in (429, 503)
            else None,
            blame="unavailable",
        )
    if not 200 <= status < 300:
        raise HandlerError(
            f"download from {source} refused: HTTP {status}", retryable=False, blame="unavailable"
        )
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise _too_big(url, max_bytes)
    media = _media_type(response)
    if media is not None and not (media in _ALLOWED_TYPES or media.startswith(_ALLOWED_FAMILIES)):
        raise HandlerError(
            f"download from {source} refused: content type {media} is not audio, image or video",
            retryable=False,
        )


def _load_finished(target: Path, url: str) -> SpooledFile | None:
    """A previous download of `url` if its sidecar and its file agree, else None."""
    try:
        meta: dict[str, Any] = json.loads(_meta_path(target).read_text())
        size = target.stat().st_size
    except (OSError, ValueError):
        return None
    if meta.get("url") != url or meta.get("size") != size:
        return None
    content_type = meta.get("content_type")
    return SpooledFile(
        url=url,
        path=target,
        size=size,
        content_type=content_type if isinstance(content_type, str) else None,
    )


def _store_meta(target: Path, found: SpooledFile) -> None:
    meta = {"url": found.url, "size": found.size, "content_type": found.content_type}
    final = _meta_path(target)
    temp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.part")
    try:
        temp.write_text(json.dumps(meta))
        os.replace(temp, final)
    finally:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)


def _meta_path(target: Path) -> Path:
    return target.with_name(target.name + ".meta.json")


def _media_type(response: httpx.Response) -> str | None:
    value = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return value or None


def _too_big(url: str, max_bytes: int) -> HandlerError:
    return HandlerError(
        f"download from {where(url)} refused: larger than {max_bytes} bytes", retryable=False
    )


def _url_suffix(url: str) -> str:
    """The URL's file extension if it is short and plain, so spool files keep a useful name."""
    try:
        suffix = PurePosixPath(urlsplit(url).path).suffix.lower()
    except ValueError:
        return ""
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


def _safe_component(value: str) -> str:
    """A single path component for `value`: plain characters, no dots in front, unique."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", value).lstrip(".")[:64]
    if cleaned == value and cleaned:
        return cleaned
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{cleaned[:48]}-{digest}" if cleaned else digest
