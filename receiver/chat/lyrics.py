"""`/song lyrics <idea>`: lyrics only, written upstream and told back to the person who asked.

Lyrics cost a credit, so they pass the same guard rails as a song (a refusal costs nothing and
sends nothing upstream). Writing them means a create and a few polls, longer than a chat app
may take to answer, so it runs in the background and the result comes back through `tell`.
No task is stored for lyrics, so `ChatJobs.keep` remembers what they spent for the budgets.
"""

from __future__ import annotations

import time
import uuid

from handlers.slack_messages import escape
from receiver import costs
from receiver.chat.asking import Asker, Tell, guard_priced, one_line
from receiver.chat.config import DiscordChat, SlackChat
from receiver.chat.guard import Spent
from receiver.chat.jobs import ChatJobs
from receiver.errors import UpstreamError
from receiver.logging import get_logger
from receiver.models import LyricsResult
from receiver.services import Services

__all__ = ["MESSAGE_CHARS", "lyrics_message", "start_lyrics"]

log = get_logger("aimusic_relay.chat")

MESSAGE_CHARS = 1900
"""The most a lyrics message holds: under Discord's 2,000-character message limit (Slack's is
far higher), so the same text fits both apps."""
_CUT = "\n… (cut to fit a chat message)"
_TITLE_CHARS = 150
"""A title (or the idea standing in for one) longer than this is shortened: even escaped, the
heading then leaves most of the message for the lyrics."""


async def start_lyrics(
    services: Services,
    app: SlackChat | DiscordChat,
    jobs: ChatJobs,
    asker: Asker,
    idea: str,
    tell: Tell,
) -> str | None:
    """Start writing lyrics for `idea` in the background, or say why not (the guard's refusal).

    The lyrics, or the provider's refusal as one line, arrive later through `tell`.
    """
    now = time.time()
    refusal = await guard_priced(services, app, jobs, asker, costs.LYRICS, now)
    if refusal is not None:
        return refusal
    ref = uuid.uuid4().hex
    spent = Spent(user=asker.user, channel=asker.channel, credits=costs.LYRICS, at=now)
    jobs.start(ref, spent, _write(services, jobs, ref, spent, idea, asker.app, tell))
    log.info("chat lyrics asked", app=asker.app, ref=ref)
    return None


async def _write(
    services: Services,
    jobs: ChatJobs,
    ref: str,
    spent: Spent,
    idea: str,
    app: str,
    tell: Tell,
) -> None:
    """Write the lyrics and tell them; every outcome but a refused create keeps the spend."""
    try:
        results = await services.upstream.write_lyrics(idea)
    except UpstreamError as exc:
        if not _refused(exc):
            jobs.keep(ref, spent)
        log.warning("chat lyrics not written", app=app, ref=ref, error=str(exc))
        await tell(f"No lyrics were written: {one_line(exc)}")
        return
    except Exception:
        jobs.keep(ref, spent)  # the create may have gone out: count it rather than undercount
        log.exception("chat lyrics failed", app=app, ref=ref)
        await tell("No lyrics were written: the relay failed.")
        return
    jobs.keep(ref, spent)
    log.info("chat lyrics written", app=app, ref=ref, results=len(results))
    await tell(lyrics_message(idea, results))


def lyrics_message(idea: str, results: list[LyricsResult]) -> str:
    """The first result as a chat message: its title, then the lyrics, cut to `MESSAGE_CHARS`.

    Escaped for Slack's markup like every chat text (`one_line`); the lyrics keep their lines.
    """
    first = next((result for result in results if (result.lyrics or "").strip()), None)
    if first is None:
        return f"The provider wrote no lyrics for “{escape(idea)}”; try another idea."
    title = " ".join((first.title or "").split()) or idea
    title = escape(title if len(title) <= _TITLE_CHARS else title[: _TITLE_CHARS - 1] + "…")
    header = f"📝 “{title}”\n\n"
    raw = [line.rstrip() for line in (first.lyrics or "").strip().splitlines()]
    text = header + "\n".join(escape(line) for line in raw)
    if len(text) <= MESSAGE_CHARS:
        return text
    room = MESSAGE_CHARS - len(header) - len(_CUT)
    kept: list[str] = []
    used = 0
    for line in raw:  # whole lines, so neither a line nor an escaped `&amp;` is cut in half
        shown = escape(line)
        if used + len(shown) > room:
            break
        kept.append(shown)
        used += len(shown) + 1
    if not kept:  # the first line alone is longer than a message: cut the line itself
        shown = escape(raw[0])[:room]
        entity = shown.rfind("&")
        kept = [shown[:entity] if entity >= 0 and ";" not in shown[entity:] else shown]
    return header + "\n".join(kept).rstrip() + _CUT


def _refused(exc: UpstreamError) -> bool:
    """A 4xx answer: the provider refused the request (out of credits, a bad idea), and a
    refused create costs nothing. A failed lyrics task (no status), a timeout or a 5xx may
    have been charged, so they count."""
    return exc.status is not None and 400 <= exc.status < 500
