"""Dry runs of each configured handler's credentials, for `aimusic-relay doctor`.

A dry run proves the destination would accept us without leaving a trace a person sees:
Slack's `auth.test` for a bot token, `HeadBucket` for S3, the directory's permissions for disk
(not a temporary file: doctor changes nothing, not even a directory's mtime). Where the
only real test would notify someone (a Slack incoming webhook, Apprise, a forward target),
the check stops at the URL's form and says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

from receiver.delivery.handler_set import ConfiguredHandler

__all__ = ["Check", "Status", "check_handler", "handler_secrets"]

Status = Literal["ok", "warn", "fail"]

SLACK_TIMEOUT_S = 10
S3_TIMEOUT_S = 30.0
_SLACK_HOOK_PATH = re.compile(r"^/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+$")
_NOT_SENT = "not sent: that would notify someone"


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's report: what was checked, how it went, what to do about it."""

    name: str
    status: Status
    detail: str
    advice: str = ""


async def check_handler(configured: ConfiguredHandler) -> Check:
    """The dry run for this handler's type; unknown types only report that they loaded."""
    kind = configured.spec.type
    config = getattr(configured.handler, "config", None)
    name = f"handler {configured.name}"
    try:
        if kind == "slack":
            return await _slack(name, config)
        if kind == "s3":
            return await _s3(name, configured.handler)
        if kind == "disk":
            return await asyncio.to_thread(_disk, name, config)
        if kind == "forward":
            return _forward(name, config)
        if kind == "apprise":
            return _apprise(name, config)
    except Exception as exc:  # a report line, never a traceback
        return _check(name, "fail", f"check crashed: {type(exc).__name__}: {exc}")
    return _check(name, "ok", f"type {kind} loaded; doctor has no dry run for it")


def handler_secrets(configured: ConfiguredHandler) -> list[str]:
    """Every secret value in the handler's options (SecretStr fields, header values)."""
    config = getattr(configured.handler, "config", None)
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            found.extend(str(item) for item in value.values())
        elif isinstance(value, BaseModel):
            for field in type(value).model_fields:
                walk(getattr(value, field))

    walk(config)
    if configured.spec.type == "s3" and config is not None:
        found.append(str(getattr(config, "access_key_id", "") or ""))
    return [value for value in found if value]


def _check(name: str, status: Status, detail: str, advice: str = "") -> Check:
    return Check(name, status, detail, advice)


async def _slack(name: str, config: Any) -> Check:
    if config.webhook_url is not None:
        parts = urlsplit(config.webhook_url.get_secret_value())
        if parts.scheme == "https" and parts.hostname == "hooks.slack.com":
            if _SLACK_HOOK_PATH.match(parts.path):
                return _check(name, "ok", f"incoming webhook URL has Slack's form; {_NOT_SENT}")
            return _check(
                name,
                "fail",
                "incoming webhook URL is not /services/T…/B…/…",
                "copy the whole URL from Slack's Incoming Webhooks page",
            )
        return _check(
            name,
            "warn",
            f"webhook URL is not on https://hooks.slack.com ({parts.scheme}://{parts.hostname}); "
            f"fine for a proxy; {_NOT_SENT}",
        )
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    logger = logging.getLogger("handlers.slack.sdk")
    logger.setLevel(logging.WARNING)  # slack-sdk's debug lines may quote credentials
    base = config.api_base_url or AsyncWebClient.BASE_URL
    client = AsyncWebClient(
        config.token.get_secret_value(),
        base,
        timeout=SLACK_TIMEOUT_S,
        logger=logger,
        retry_handlers=[],
    )
    where = urlsplit(base).hostname
    try:
        answer = await client.auth_test()
    except SlackApiError as exc:
        code = exc.response.get("error", "error") if exc.response is not None else "error"
        return _check(
            name,
            "fail",
            f"Slack ({where}) refused the bot token: {code}",
            "use the Bot User OAuth Token (xoxb-…) of an installed app",
        )
    except Exception as exc:
        return _check(
            name,
            "fail",
            f"cannot reach Slack at {where}: {type(exc).__name__}",
            "check the network (and api_base_url, if set)",
        )
    team, user = answer.get("team", "?"), answer.get("user", "?")
    return _check(
        name,
        "ok",
        f"bot token accepted (auth.test: team {team}, bot {user}); posts to {config.channel}",
        "invite the bot to that channel if it is not there yet",
    )


async def _s3(name: str, handler: Any) -> Check:
    import botocore.exceptions as boto_errors  # type: ignore[import-untyped]

    config = handler.config
    where = urlsplit(config.endpoint_url).hostname if config.endpoint_url else "AWS"
    bucket = config.bucket

    def head() -> None:
        # The handler's own client: the same credential chain, endpoint and addressing style.
        handler._client().head_bucket(Bucket=bucket)

    try:
        await asyncio.wait_for(asyncio.to_thread(head), S3_TIMEOUT_S)
    except boto_errors.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "?"))
        if code in ("404", "NoSuchBucket"):
            return _check(
                name,
                "fail",
                f"bucket {bucket!r} does not exist at {where}",
                "create it, or fix bucket / region / endpoint_url",
            )
        if code in ("403", "AccessDenied"):
            return _check(
                name,
                "fail",
                f"access to bucket {bucket!r} at {where} denied",
                "give these credentials s3:PutObject and s3:ListBucket on it",
            )
        return _check(name, "fail", f"bucket {bucket!r} at {where}: {code}")
    except (boto_errors.NoCredentialsError, boto_errors.PartialCredentialsError):
        return _check(
            name,
            "fail",
            "no AWS credentials found",
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)",
        )
    except (boto_errors.BotoCoreError, TimeoutError) as exc:
        return _check(
            name,
            "fail",
            f"cannot reach {where}: {type(exc).__name__}",
            "check endpoint_url and the network",
        )
    return _check(name, "ok", f"bucket {bucket!r} at {where} reachable with these credentials")


def _disk(name: str, config: Any) -> Check:
    target = Path(config.path).resolve()
    if target.exists() and not target.is_dir():
        return _check(name, "fail", f"{target} is a file, not a directory", "change `path`")
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return _check(name, "fail", f"{existing} is a file: cannot create {target}")
    if existing != target:
        if os.access(existing, os.W_OK | os.X_OK):
            return _check(name, "ok", f"{target} will be created (parent {existing} writable)")
        return _check(name, "fail", f"cannot create {target}: {existing} is not writable")
    # access(2) also answers EROFS for a read-only mount.
    if not os.access(target, os.W_OK | os.X_OK):
        return _check(
            name, "fail", f"{target} is not writable", "fix the permissions, or change `path`"
        )
    return _check(name, "ok", f"{target} is writable")


def _forward(name: str, config: Any) -> Check:
    parts = urlsplit(config.url)
    port = f":{parts.port}" if parts.port else ""
    where = f"{parts.scheme}://{parts.hostname}{port}"
    if parts.scheme != "https":
        return _check(
            name,
            "warn",
            f"URL well-formed but plain http ({where}); {_NOT_SENT}",
            "use https so the event is not readable on the way",
        )
    return _check(name, "ok", f"URL well-formed ({where}, path not shown); {_NOT_SENT}")


def _apprise(name: str, config: Any) -> Check:
    schemes = sorted({url.get_secret_value().split("://", 1)[0] for url in config.urls})
    count = len(config.urls)
    return _check(name, "ok", f"{count} Apprise URL(s) parse ({', '.join(schemes)}); {_NOT_SENT}")
