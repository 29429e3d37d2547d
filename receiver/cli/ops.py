"""Operator commands: `tasks`, `events`, `dead-letters`, `replay`, `doctor`.

Thin shells over the same store methods `/api/*` calls, on the database `DATABASE_URL` names.
They never migrate (a typo in `DATABASE_URL` must not create an empty database), and their
`--json` output is plain JSON with no colour codes and no secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from receiver.cli import render
from receiver.cli.shell import app, err, fail, out, run, settings_for
from receiver.errors import RelayError, StoreUnavailable
from receiver.logging import configure_logging
from receiver.states import TASK_STATES, DeliveryState

if TYPE_CHECKING:  # the store pulls in SQLAlchemy, psycopg and Alembic: import on use
    from receiver.config import Settings
    from receiver.rows import EventRow, TaskRow
    from receiver.store import Store

__all__ = ["TASK_STATES", "open_existing_store"]

FOLLOW_POLL_S = 0.5
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts (no colour).")]
LimitOption = Annotated[int, typer.Option(min=1, max=500, help="How many rows at most.")]


@contextlib.asynccontextmanager
async def open_existing_store(settings: Settings) -> AsyncIterator[Store]:
    """The relay's store, reached and at a known schema, or a `RelayError` naming the fix."""
    from receiver.store import open_store
    from receiver.store.migrate import head_revision

    if settings.is_sqlite and not settings.sqlite_path.is_file():
        raise RelayError(
            f"no database at {settings.sqlite_path}: set DATABASE_URL to the relay's database "
            "(or create one with `aimusic-relay db upgrade`)"
        )
    store = open_store(settings.database_url, migrate_on_open=False, pool_size=2)
    try:
        try:
            revision = await store.ping()
        except StoreUnavailable as exc:
            raise RelayError(
                f"{exc}: check DATABASE_URL and that the database is running"
            ) from None
        if revision is None:
            raise RelayError(
                "the database has no relay schema: check DATABASE_URL, or run "
                "`aimusic-relay db upgrade`"
            )
        if revision != head_revision():
            err.print(
                f"[yellow]schema {revision} is not the latest: run `aimusic-relay db upgrade`[/]"
            )
        yield store
    finally:
        await store.close()


def _emit_json(value: Any) -> None:
    """Plain JSON on stdout (rich would colour it on a terminal)."""
    print(json.dumps(render.plain(value), indent=2, ensure_ascii=False))


def _show(sheet: render.Sheet) -> None:
    """A table fitted to the terminal for a person; off a terminal, tab-separated lines under
    a header, never wrapped at 80 columns (rich's width when it cannot ask a terminal)."""
    if out.is_terminal:
        out.print(sheet.table(out.width), crop=False)
    else:
        sys.stdout.write(sheet.tsv())


@app.command()
def tasks(
    state: Annotated[
        str | None, typer.Option(help=f"Only tasks in this state: {', '.join(TASK_STATES)}.")
    ] = None,
    limit: LimitOption = 50,
    as_json: JsonOption = False,
) -> None:
    """List tasks, newest first."""
    if state is not None and state not in TASK_STATES:
        raise fail(f"--state {state!r}: use one of {', '.join(TASK_STATES)}", 2)
    settings = settings_for()

    async def fetch() -> list[TaskRow]:
        async with open_existing_store(settings) as store:
            return await store.reads.list_tasks(limit, state=state)

    rows = run(fetch)  # `--json` hides callback tokens (`plain`); the table shows none
    if as_json:
        _emit_json(rows)
    elif not rows:
        err.print("no tasks" + (f" in state {state}" if state else ""))
    else:
        _show(render.tasks_sheet(rows, terminal=out.is_terminal))


@app.command()
def events(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events until Ctrl-C.")
    ] = False,
    limit: LimitOption = 20,
    as_json: JsonOption = False,
) -> None:
    """Show the latest events, oldest first; --follow then prints new ones as they arrive.

    With --json: a JSON array, or with --follow one JSON object per line.
    """
    settings = settings_for()
    if not follow:

        async def fetch() -> list[EventRow]:
            async with open_existing_store(settings) as store:
                return list(reversed(await store.reads.list_events(limit)))

        rows = run(fetch)
        if as_json:
            _emit_json(rows)
        elif not rows:
            err.print("no events yet")
        else:
            _show(render.events_sheet(rows, terminal=out.is_terminal))
        return

    def show(row: EventRow) -> None:
        if as_json:
            print(json.dumps(render.plain(row), ensure_ascii=False), flush=True)
        else:
            out.print(render.event_line(row), highlight=False, soft_wrap=True)
            sys.stdout.flush()

    try:
        run(lambda: _follow_events(settings, limit, show))
    except typer.Exit as exc:
        if exc.exit_code != 130:  # Ctrl-C is how a follow ends: not an error
            raise


async def _follow_events(settings: Settings, limit: int, show: Callable[[EventRow], None]) -> None:
    """Print the last `limit` events, then poll for new ones until Ctrl-C (or SIGTERM).

    The signal only sets an event, checked between polls: cancelling the task in the middle of
    a database call (what asyncio.run does on Ctrl-C) could leave the driver's thread waiting
    and the command hanging instead of ending. An event that leaves the newest page can never
    come back to it, so remembering the ids of the newest page is enough."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with open_existing_store(settings) as store:
            recent = await store.reads.list_events(max(limit, 50))
            for row in reversed(recent[:limit]):
                show(row)
            seen = {row.id for row in recent}
            if sys.stderr.isatty():
                err.print("[dim]following new events; Ctrl-C to stop[/]")
            while not await _stopped(stop, FOLLOW_POLL_S):
                page = 50
                while True:
                    recent = await store.reads.list_events(page)
                    fresh = [row for row in recent if row.id not in seen]
                    if len(fresh) < len(recent) or len(recent) < page or page >= 500:
                        break
                    page *= 4  # a burst: everything on the page is new, look further back
                for row in sorted(fresh, key=lambda r: (r.received_at, r.id)):
                    show(row)
                seen = {row.id for row in recent}
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _stopped(stop: asyncio.Event, wait_s: float) -> bool:
    """Wait up to `wait_s` for `stop`; True once it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), wait_s)
    return stop.is_set()


@app.command("dead-letters")
def dead_letters(
    handler: Annotated[str | None, typer.Option(help="Only this handler's.")] = None,
    limit: LimitOption = 100,
    as_json: JsonOption = False,
) -> None:
    """Deliveries that ran out of attempts (or failed permanently), newest first."""
    settings = settings_for()

    async def fetch() -> list[dict[str, Any]]:
        async with open_existing_store(settings) as store:
            rows = await store.reads.list_deliveries(DeliveryState.DEAD, limit, handler=handler)
            found = await store.reads.events_for(ids=sorted({r.event_id for r in rows}))
        by_id = {e.id: e for e in found}
        return [render.dead_letter(row, by_id.get(row.event_id)) for row in rows]

    rows = run(fetch)
    if as_json:
        _emit_json(rows)
    elif not rows:
        err.print("no dead letters" + (f" for handler {handler}" if handler else ""))
    else:
        _show(render.dead_letters_sheet(rows, terminal=out.is_terminal))
        err.print(
            "replay one: `aimusic-relay replay DELIVERY_ID`; all: `aimusic-relay replay --dead`"
        )


@app.command()
def replay(
    delivery_id: Annotated[
        str | None, typer.Argument(help="A delivery id (see `aimusic-relay dead-letters`).")
    ] = None,
    event: Annotated[
        str | None, typer.Option("--event", help="Every finished delivery of this event.")
    ] = None,
    dead: Annotated[bool, typer.Option("--dead", help="Every dead letter.")] = False,
    handler: Annotated[str | None, typer.Option(help="Only this handler's.")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="With --dead: only those that died since (ISO 8601 or unix seconds)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run finished deliveries again; a running `serve` or `worker` picks them up."""
    chosen = sum((delivery_id is not None, event is not None, dead))
    if chosen != 1:
        raise fail("give one of: DELIVERY_ID, --event EVENT_ID, or --dead [--handler H]", 2)
    if since is not None and not dead:
        raise fail("--since works with --dead only", 2)
    if handler is not None and delivery_id is not None:
        raise fail("--handler works with --event or --dead, not with a delivery id", 2)
    dead_since = _parse_since(since) if dead else None
    settings = settings_for()

    async def replay_all() -> int:
        async with open_existing_store(settings) as store:
            count = await store.replay(
                delivery_id=delivery_id, event_id=event, handler=handler, dead_since=dead_since
            )
            if count or delivery_id is None:
                return count
            found = await store.reads.get_delivery(delivery_id)
        if found is None:
            raise RelayError(f"no delivery {delivery_id}; see `aimusic-relay dead-letters`")
        raise RelayError(
            f"delivery {delivery_id} is {found.state}: only succeeded or dead deliveries "
            "can be replayed"
        )

    count = run(replay_all)
    if event is not None and not count:
        raise fail(f"no finished delivery for event {event}; see `aimusic-relay events`", 1)
    if as_json:
        print(json.dumps({"replayed": count}))
    elif count:
        err.print(f"replayed {count}: pending again; a running `serve` or `worker` runs them")
    else:
        err.print("no dead letters matched; nothing replayed")


def _parse_since(text: str | None) -> float:
    """Unix seconds or ISO 8601 (a time without zone is UTC); none means every dead letter."""
    if text is None:
        return 0.0
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise fail(
            f"--since {text!r}: give ISO 8601 (2026-01-31T12:00:00Z) or unix seconds", 2
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@app.command()
def doctor(as_json: JsonOption = False) -> None:
    """Check settings, database, API key, public URL and each handler's credentials.

    Exit status 1 when any check failed; warnings alone exit 0.
    """
    from receiver.cli.doctor import run_doctor

    configure_logging("warning", "auto")
    if as_json:
        checks = asyncio.run(run_doctor())
        print(json.dumps(render.doctor_json(checks), indent=2))
    else:
        with err.status("checking…", spinner="dots") as status:
            checks = asyncio.run(
                run_doctor(progress=lambda name: status.update(f"checking {name}…"))
            )
        out.print(render.doctor_table(checks))
    failed = [c.name for c in checks if c.status == "fail"]
    if failed and not as_json:
        err.print(f"[bold red]{len(failed)} failed:[/] {', '.join(failed)}", highlight=False)
    raise typer.Exit(1 if failed else 0)
