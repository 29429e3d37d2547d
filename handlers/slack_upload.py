"""Upload a finished song's audio into its Slack thread, so it plays inside Slack.

Best effort by design: it runs after the song's message is posted, so a failure here (a
download, a file too big, Slack refusing the upload) is logged and written into the
delivery's result, and never fails the delivery, which would post the message again on retry.

The audio comes through the event's spool (the size cap and the SSRF guard every download
has, and one download shared with the other handlers of the event); slack-sdk's
`files_upload_v2` does Slack's three steps: `files.getUploadURLExternal`, a POST of the bytes
to the URL it hands out, and `files.completeUploadExternal` to share the file in the thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from handlers._files import audio_extension, slugify
from handlers.base import HandlerContext, HandlerError
from receiver.models import Event

__all__ = ["MB", "upload_audio"]

MB = 1024 * 1024
"""upload_max_mb counts mebibytes, as file sizes are usually shown."""
_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


async def upload_audio(
    client: AsyncWebClient,
    event: Event,
    ctx: HandlerContext,
    *,
    channel: str,
    thread_ts: str,
    max_mb: int,
    handler: str,
) -> dict[str, Any]:
    """Upload the song's audio into `thread_ts` of `channel`; what happened, for the result.

    `{"file_id", "bytes"}` once shared; `{"skipped": why}` when there is nothing to upload or it
    is over `max_mb`; `{"failed": why}` otherwise. Never raises for a failed upload.
    """
    url = event.audio_url
    if not url:
        return {"skipped": "the song has no audio URL"}
    try:
        audio = await ctx.spool.fetch(url)
        ext = audio_extension(audio)
    except HandlerError as exc:
        ctx.log.warning("slack audio not uploaded", handler=handler, error=exc.message)
        return {"failed": f"download: {exc.message}"}
    if audio.size > max_mb * MB:
        size = f"{audio.size / MB:.1f} MB"
        ctx.log.info("slack audio over upload_max_mb; linked only", handler=handler, size=size)
        return {"skipped": f"the audio is {size}, over upload_max_mb = {max_mb}; linked only"}
    data = await asyncio.to_thread(audio.path.read_bytes)
    title = str(event.clip.get("title") or "").strip() or "song"
    try:
        answer = await client.files_upload_v2(
            file=data,
            filename=f"{slugify(title)}.{ext}",
            title=title,
            channel=channel,
            thread_ts=thread_ts,
        )
    except SlackApiError as exc:
        code = exc.response.get("error") if exc.response is not None else None
        return _failed(ctx, handler, f"Slack refused the upload: {code or 'error'}")
    except (SlackClientError, *_TRANSPORT_ERRORS) as exc:
        # The type only: the text can quote the upload URL, which lets anyone holding it upload.
        return _failed(ctx, handler, f"upload not sent: {type(exc).__name__}")
    shared = answer.get("file")
    file_id = shared.get("id") if isinstance(shared, dict) else None
    ctx.log.info("slack audio uploaded", handler=handler, bytes=audio.size)
    return {"file_id": file_id, "bytes": audio.size}


def _failed(ctx: HandlerContext, handler: str, why: str) -> dict[str, Any]:
    ctx.log.warning("slack audio not uploaded", handler=handler, error=why)
    return {"failed": why}
