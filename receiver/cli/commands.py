"""The `aimusic-relay` command: a thin shell over the functions the HTTP API uses.

Each command parses, configures logging, runs, and on a user error prints its cause in one
line and exits non-zero (2 for configuration, 1 for everything else) — no traceback.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from receiver import __version__
from receiver.cli.shell import api_key, app, db_app, err, fail, out, run, settings_for
from receiver.errors import ConfigError
from receiver.logging import configure_logging
from receiver.states import FAMILIES

__all__ = ["app"]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 on a PaaS.")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Listen port (default: $PORT or 8000).")] = None,
) -> None:
    """Receive callbacks and serve the API; dispatches in-process on SQLite."""
    import uvicorn

    from receiver.app import create_app

    settings = settings_for(port=port)
    try:
        application = create_app(settings)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    uvicorn.run(
        application,
        host=host,
        port=settings.port,
        http="receiver.http.protocol:HeaderLimitsProtocol",  # header deadline and size cap
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "*"),
        timeout_graceful_shutdown=25,
    )


@app.command()
def worker() -> None:
    """Run the dispatcher alone (for PostgreSQL deployments with separate workers)."""
    from receiver.delivery.worker import run_worker

    settings = settings_for()
    run(lambda: run_worker(settings))


@app.command()
def sandbox(
    port: Annotated[int, typer.Option(help="Listen port.")] = 8900,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    api_key: Annotated[str | None, typer.Option(help="Accept only this bearer key.")] = None,
    delay: Annotated[float, typer.Option(help="Seconds from create to the final state.")] = 3.0,
    rate_limit: Annotated[
        bool, typer.Option("--rate-limit", help="429 beyond 2 requests/s per key.")
    ] = False,
    error_rate: Annotated[float, typer.Option(help="Fraction of API requests answered 500.")] = 0.0,
    credits: Annotated[float, typer.Option(help="Starting credits (creates: 10 or 15).")] = 10_000,
) -> None:
    """Run the AI Music API emulator.

    Prompt markers inject faults: #fail #nocallback #dup #slowcallback #badsig #streaming
    #never, and #copyright in lyrics.
    """
    from receiver.sandbox import SandboxOptions
    from receiver.sandbox import serve as serve_sandbox

    configure_logging("info", "auto")
    if not 0.0 <= error_rate <= 1.0:
        raise fail(f"--error-rate {error_rate}: must be between 0 and 1", 2)
    options = SandboxOptions(
        api_key=api_key,
        delay_s=delay,
        rate_limit=rate_limit,
        error_rate=error_rate,
        credits=credits,
    )
    err.print(f"sandbox listening on http://{host}:{port}  (AIMUSIC_BASE_URL=http://{host}:{port})")
    run(lambda: serve_sandbox(host, port, options))


@app.command()
def submit(
    prompt: Annotated[
        str, typer.Argument(help="Style/description of the song (producer `sound`).")
    ],
    lyrics: Annotated[
        Path | None, typer.Option(help="File with the lyrics.", exists=True, dir_okay=False)
    ] = None,
    title: Annotated[str | None, typer.Option(help="Song title (max 80 characters).")] = None,
    instrumental: Annotated[bool, typer.Option("--instrumental", help="No vocals.")] = False,
    label: Annotated[
        list[str] | None, typer.Option(help="key=value label for routing; repeatable.")
    ] = None,
    handler: Annotated[
        list[str] | None, typer.Option(help="Only these handlers; repeatable.")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show progress until the song is delivered.")
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(help="Give up waiting after this many seconds (exit 3; the task goes on)."),
    ] = 900,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    family: Annotated[
        str, typer.Option(help="producer, or sonic (two songs per task, Suno-backed).")
    ] = "producer",
    tags: Annotated[str | None, typer.Option(help="sonic: style tags.")] = None,
    model: Annotated[
        str | None, typer.Option(help="Model (`mv`), e.g. FUZZ-2.0, sonic-v5.")
    ] = None,
) -> None:
    """Create a song; the relay's server receives the callback and runs the handlers."""
    from receiver.cli.progress import submit_and_wait

    settings = settings_for()
    api_key(settings)
    params: dict[str, Any] = {"sound": prompt}
    if lyrics is not None:
        try:
            params["lyrics"] = lyrics.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"--lyrics {lyrics}: cannot read it as UTF-8 text ({exc})", 2) from None
    if title is not None:
        params["title"] = title
    if instrumental:
        params["make_instrumental"] = True
    if tags is not None:
        params["tags"] = tags
    if model is not None:
        params["mv"] = model
    if family not in FAMILIES:
        raise fail(f"--family {family!r}: use producer or sonic", 2)
    labels = {}
    for item in label or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise fail(f"--label {item!r}: write it as key=value, e.g. --label team=ads", 2)
        labels[key] = value
    body = {"family": family, "params": params, "labels": labels, "handlers": handler}
    code = run(lambda: submit_and_wait(settings, body, wait=wait, wait_s=timeout, as_json=as_json))
    raise typer.Exit(code)


@app.command()
def demo(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Where to put the database and songs (default: a new temporary directory).",
        ),
    ] = None,
    prompt: Annotated[
        str, typer.Option(help="What to ask the sandbox for.")
    ] = "lo-fi piano, rainy evening",
    no_callbacks: Annotated[
        bool,
        typer.Option("--no-callbacks", help="Poll instead (as on a laptop with no public URL)."),
    ] = False,
    chat: Annotated[
        bool,
        typer.Option(
            "--chat", help="Ask with /song in a stand-in Slack; print the thread as a transcript."
        ),
    ] = False,
) -> None:
    """Run the sandbox and the relay together on loopback and deliver one song to disk (or,
    with --chat, to a stand-in Slack channel's thread)."""
    from receiver.cli.demo import run_demo
    from receiver.cli.demo_chat import run_chat_demo

    configure_logging("warning", "auto")
    callbacks = not no_callbacks
    if chat:
        raise typer.Exit(run(lambda: run_chat_demo(directory, prompt, callbacks=callbacks)))
    raise typer.Exit(run(lambda: run_demo(directory, prompt, callbacks=callbacks)))


@app.command()
def credits(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show the AI Music API account's credits (extra credits are spent first)."""
    from receiver.upstream.client import UpstreamClient

    settings = settings_for()
    key = api_key(settings)

    async def fetch() -> dict[str, float]:
        async with UpstreamClient(settings.aimusic_base_url, key) as client:
            answer = await client.credits()
        return {"credits": answer.credits, "extra_credits": answer.extra_credits}

    balance = run(fetch)
    if as_json:
        out.print_json(json.dumps(balance))
    else:
        out.print(f"credits: {balance['credits']:g}   extra credits: {balance['extra_credits']:g}")


@app.command()
def lyrics(
    prompt: Annotated[str, typer.Argument(help="What the song is about.")],
    family: Annotated[str, typer.Option(help="producer (1 result) or sonic (2).")] = "producer",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Write lyrics with the provider (producer lyrics-create or sonic lyrics)."""
    from receiver.upstream.client import UpstreamClient

    if family not in FAMILIES:  # nuro: the provider's own "retired"
        raise fail(f"--family {family!r}: use producer or sonic", 2)
    settings = settings_for()
    key = api_key(settings)

    async def write() -> list[dict[str, Any]]:
        async with UpstreamClient(settings.aimusic_base_url, key) as client:
            results = await client.write_lyrics(prompt, family=family)
        return [{"title": r.title, "lyrics": r.lyrics} for r in results]

    written = run(write)
    if as_json:
        out.print_json(json.dumps(written))
        return
    for item in written:
        out.print(f"[bold]{item['title']}[/]\n{item['lyrics']}\n", highlight=False)


@app.command("handlers")
def list_handlers(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the configured handlers and the installed handler types."""
    from handlers.registry import HandlerRegistry
    from receiver.delivery.handler_set import load_handler_set

    settings = settings_for()
    registry = HandlerRegistry.with_plugins()
    try:
        configured = load_handler_set(settings.config_path, registry)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    rows = [
        {
            "name": h.name,
            "type": h.spec.type,
            "events": list(h.events),
            "after": h.spec.after,
            "platforms": h.spec.platforms,
            "labels": h.spec.labels,
        }
        for h in configured
    ]
    if as_json:
        out.print_json(
            json.dumps({"configured": rows, "types": registry.types(), "source": configured.source})
        )
        return
    out.print(f"[bold]Configured handlers[/] ({configured.source})")
    for row in rows:
        events = ",".join(str(kind) for kind in row["events"] or [])
        out.print(f"  {row['name']:<16} type={row['type']:<10} events={events}")
    out.print("[bold]Installed types[/]")
    for name, target in registry.types().items():
        out.print(f"  {name:<16} {target}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply schema migrations (the Procfile's `release` step)."""
    from receiver.store.migrate import head_revision, upgrade

    settings = settings_for()
    try:
        upgrade(settings.database_url)
    except Exception as exc:
        raise fail(f"migration failed: {type(exc).__name__}: {exc}", 1) from None
    err.print(f"schema at {head_revision()}")


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)
