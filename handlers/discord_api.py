"""The HTTP calls the `discord` handler makes, and what Discord's answers mean for a retry.

Kept apart from the handler so the handler reads as "which message to edit or post" and this
module as "how to talk to Discord": the interaction webhook (edit the original response, post
a follow-up, edit a follow-up) while a token lives, the channel with the bot token after, a
multipart body when audio is attached, and Discord's refusals turned into `HandlerError`s (a
429's `retry_after` or `Retry-After` pauses the handler; 5xx retries; other 4xx blame the
destination). The interaction token is a capability: every URL holding it is built here, and
no error this module raises quotes a URL or the token.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from handlers.base import HandlerCheck, HandlerError
from handlers.discord_messages import Message

__all__ = ["DISCORD_API", "DiscordApi", "DiscordRefused", "Upload", "check_bot_token"]

DISCORD_API = "https://discord.com/api/v10"
CHECK_TIMEOUT_S = 10.0
"""How long a credential check waits for Discord."""
_MESSAGE_CHARS = 300
"""How much of Discord's error message an error keeps."""

_TOO_LARGE = 40005
"""Discord's JSON code for a request (in practice an attachment) over the size it allows."""

Upload = tuple[str, bytes, str]
"""An attachment: file name, bytes, content type."""


class DiscordRefused(HandlerError):
    """Discord answered with an error; `status` and `code` say which, so callers can react."""

    def __init__(self, what: str, status: int, code: int | None, message: str, wait: float | None):
        retryable = status == 429 or status >= 500
        said = f"{message} (code {code}, HTTP {status})" if code else f"HTTP {status}"
        after = f", retry after {wait:g} s" if wait is not None else ""
        super().__init__(
            f"discord {what}: {said}{after}",
            retryable=retryable,
            retry_after=wait,
            blame="unavailable" if retryable else "destination",
        )
        self.status = status
        self.code = code

    @property
    def webhook_gone(self) -> bool:
        """The interaction webhook cannot be used: its token expired (10015, 50027) or the
        message to edit was deleted (10008). The channel still can."""
        return self.status in (401, 404)

    @property
    def too_large(self) -> bool:
        """Discord refused the request's size (413, code 40005 "Request entity too large"):
        an attachment over the server's upload limit. Without the file the message goes."""
        return self.status == 413 or self.code == _TOO_LARGE


class DiscordApi:
    """One application's calls to Discord (or a stand-in at `base_url`)."""

    def __init__(
        self, base_url: str, application_id: str, bot_token: SecretStr, timeout_s: float
    ) -> None:
        self._api = base_url.rstrip("/")
        self._application_id = application_id
        self._bot_token = bot_token
        self._timeout = timeout_s

    async def edit_original(
        self, http: httpx.AsyncClient, token: str, message: Message, upload: Upload | None
    ) -> dict[str, Any]:
        """Edit the interaction's original response (the "generating…" message)."""
        url = f"{self._hook(token)}/messages/@original"
        return await self._call(http, "PATCH", url, message, upload, None)

    async def follow_up(
        self, http: httpx.AsyncClient, token: str, message: Message, upload: Upload | None
    ) -> dict[str, Any]:
        """Post a follow-up to the interaction; `wait=true` so Discord answers its id."""
        return await self._call(http, "POST", f"{self._hook(token)}?wait=true", message, upload)

    async def edit_webhook_message(
        self,
        http: httpx.AsyncClient,
        token: str,
        message_id: str,
        message: Message,
        upload: Upload | None,
    ) -> dict[str, Any]:
        """Edit a message the interaction webhook posted (the original or a follow-up)."""
        url = f"{self._hook(token)}/messages/{message_id}"
        return await self._call(http, "PATCH", url, message, upload)

    async def edit_channel_message(
        self,
        http: httpx.AsyncClient,
        channel: str,
        message_id: str,
        message: Message,
        upload: Upload | None,
    ) -> dict[str, Any]:
        """Edit a message the bot posted in `channel`."""
        url = f"{self._api}/channels/{channel}/messages/{message_id}"
        return await self._call(http, "PATCH", url, message, upload, self._bot)

    async def post_channel_message(
        self, http: httpx.AsyncClient, channel: str, message: Message, upload: Upload | None
    ) -> dict[str, Any]:
        """Post a message in `channel` as the bot."""
        url = f"{self._api}/channels/{channel}/messages"
        return await self._call(http, "POST", url, message, upload, self._bot)

    async def check(self) -> HandlerCheck:
        """`GET /applications/@me` with the bot token (posts nothing)."""
        token = self._bot_token.get_secret_value()
        found = await check_bot_token(self._api, token, self._application_id)
        if found.status != "ok":
            return found
        return HandlerCheck("ok", "bot token accepted; answers each song's interaction")

    @property
    def _bot(self) -> dict[str, str]:
        return {"Authorization": f"Bot {self._bot_token.get_secret_value()}"}

    def _hook(self, token: str) -> str:
        return f"{self._api}/webhooks/{self._application_id}/{token}"

    async def _call(
        self,
        http: httpx.AsyncClient,
        method: str,
        url: str,
        message: Message,
        upload: Upload | None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """One call to Discord; every failure becomes a `HandlerError` that holds no URL."""
        what = f"{method} {_what(url, self._api)}"
        body = message.body()
        try:
            if upload is None:
                answer = await http.request(
                    method, url, json=body, headers=headers, timeout=self._timeout
                )
            else:
                name, data, kind = upload
                body["attachments"] = [{"id": 0, "filename": name}]
                answer = await http.request(
                    method,
                    url,
                    data={"payload_json": json.dumps(body)},
                    files={"files[0]": (name, data, kind)},
                    headers=headers,
                    timeout=self._timeout,
                )
        except httpx.HTTPError as exc:
            # `from None`: httpx's text can quote the URL, and a webhook URL holds the token
            raise HandlerError(
                f"discord {what} unreachable: {type(exc).__name__}", blame="unavailable"
            ) from None
        if answer.status_code >= 300:
            raise _refused(what, answer)
        try:
            found = answer.json()
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}


async def check_bot_token(base_url: str, bot_token: str, application_id: str) -> HandlerCheck:
    """`GET /applications/@me` at `base_url` with the bot token (it posts nothing): ok naming
    the application, or a failure saying whether Discord refused the token, could not be
    reached, or the token belongs to another application than `application_id` (commands
    would then register under one app while interactions arrive for another)."""
    where = urlsplit(base_url).hostname
    headers = {"Authorization": f"Bot {bot_token}"}
    try:
        async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_S, trust_env=False) as client:
            answer = await client.get(f"{base_url.rstrip('/')}/applications/@me", headers=headers)
    except httpx.HTTPError as exc:
        return HandlerCheck(
            "fail",
            f"cannot reach Discord at {where}: {type(exc).__name__}",
            "check the network (and api_base_url, if set)",
        )
    if answer.status_code == 401:
        return HandlerCheck(
            "fail",
            f"Discord ({where}) refused the bot token: HTTP 401",
            "copy the token from the application's Bot page in the Discord developer portal "
            "as [chat.discord] bot_token",
        )
    try:
        body = answer.json()
    except ValueError:
        body = None
    if answer.status_code != 200 or not isinstance(body, dict):
        return HandlerCheck(
            "fail",
            f"Discord ({where}) answered HTTP {answer.status_code} to GET /applications/@me",
            "check api_base_url, if set, and try again later",
        )
    owner, name = str(body.get("id", "")), str(body.get("name", "?"))
    if owner != application_id:
        return HandlerCheck(
            "fail",
            f"the bot token belongs to application {owner} ({name}), "
            f"not application_id {application_id}",
            "use the APPLICATION ID and the bot token of one application (General Information "
            "and Bot pages in the Discord developer portal)",
        )
    return HandlerCheck("ok", f"bot token accepted (application {owner}, {name})")


def _what(url: str, api: str) -> str:
    """The call's path for an error, with the interaction token cut out."""
    path = url.removeprefix(api).split("?", 1)[0]
    parts = path.split("/")
    if len(parts) > 3 and parts[1] == "webhooks":
        parts[3] = "(token)"
    return "/".join(parts)


def _refused(what: str, answer: httpx.Response) -> DiscordRefused:
    """A `DiscordRefused` with Discord's code and message, and a 429's wait (header or body)."""
    code: int | None = None
    said = ""
    wait: float | None = None
    try:
        body = answer.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = body.get("code") if isinstance(body.get("code"), int) else None
        said = " ".join(str(body.get("message") or "").split())[:_MESSAGE_CHARS]
        if isinstance(body.get("retry_after"), int | float):
            wait = float(body["retry_after"])
    header = answer.headers.get("Retry-After", "").strip()
    with contextlib.suppress(ValueError):
        wait = float(header) if header else wait
    if answer.status_code not in (429, 503):
        wait = None
    return DiscordRefused(what, answer.status_code, code, said, wait)
