"""README.md is the user-facing contract: these checks stop it drifting from the code.

Each check is a small function that returns what is missing or extra, so the last test can
feed it a README with a row removed and prove the check really fails on drift.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Mount, Route

from handlers.registry import HandlerRegistry
from receiver.app import create_app
from receiver.config import Settings, load_settings
from receiver.delivery.handler_set import HandlerSpec

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
EXAMPLE_TOML = (REPO / "deploy" / "relay.example.toml").read_text()

_PARAM = re.compile(r"\{[^}]*\}")
_ROUTE_IN_TABLE = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)")
_BUILTIN_TYPES = ("disk", "slack", "s3", "apprise", "forward", "discord")


def _section(readme: str, heading: str) -> str:
    """The text under `heading` up to the next heading of the same or a higher level (a `#`
    line inside a fenced code block is a comment, not a heading)."""
    level = len(heading.split(" ", 1)[0])
    lines = readme.splitlines()
    start = lines.index(heading)
    fenced = False
    for end in range(start + 1, len(lines)):
        line = lines[end]
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(rf"#{{1,{level}}} ", line):
            return "\n".join(lines[start:end])
    return "\n".join(lines[start:])


def _table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in `text` (header and rule rows included)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|"):
            # `\|` inside a cell is a literal bar, not a cell boundary.
            cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
            rows.append([cell.strip() for cell in cells])
    return rows


def _env_rows(readme: str) -> dict[str, list[str]]:
    """Environment variable → its row, from the table in "## Configuration" (before handlers)."""
    table = _section(readme, "## Configuration").split("### Handlers", 1)[0]
    rows: dict[str, list[str]] = {}
    for cells in _table_rows(table):
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
            rows[name] = cells
    return rows


def _shown(default: Any) -> str | None:
    """How README writes a default in backticks, or None where it describes it in words."""
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, int):
        return str(default)
    if isinstance(default, float):
        return str(int(default)) if default.is_integer() else str(default)
    if isinstance(default, str):
        return default
    return None  # None (described in words), Path (depends on $TMPDIR), secrets


def env_drift(readme: str) -> list[str]:
    """Settings fields missing from the environment table, documented variables that are not
    settings, and simple defaults (numbers, flags, words) that the table states differently."""
    rows = _env_rows(readme)
    fields = {name.upper(): field for name, field in Settings.model_fields.items()}
    problems = [f"{name}: not in README's environment table" for name in fields if name not in rows]
    problems += [
        f"{name}: in README but not a Settings field" for name in rows if name not in fields
    ]
    for name, field in fields.items():
        shown = _shown(field.default)
        if name in rows and shown is not None and f"`{shown}`" not in rows[name][-1]:
            problems.append(f"{name}: default `{shown}` not in README's cell {rows[name][-1]!r}")
    return problems


def mounted_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, path with `{}` for each parameter) for every route the real app mounts."""
    settings = load_settings({"DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}"})
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            if isinstance(route, Mount):
                walk(list(route.routes), prefix + route.path)
            elif isinstance(route, Route):
                path = _PARAM.sub("{}", prefix + route.path)
                found.update((method, path) for method in route.methods or () if method != "HEAD")

    walk(list(create_app(settings).routes), "")
    return found


def route_drift(readme: str, mounted: set[tuple[str, str]]) -> list[str]:
    """Mounted routes missing from README's HTTP table, and documented ones the app lacks."""
    documented = {
        (method, _PARAM.sub("{}", path))
        for cells in _table_rows(_section(readme, "## HTTP"))
        for method, path in _ROUTE_IN_TABLE.findall(cells[0])
    }
    problems = [f"{m} {p}: mounted, not in README's HTTP table" for m, p in mounted - documented]
    problems += [f"{m} {p}: in README's HTTP table, not mounted" for m, p in documented - mounted]
    return sorted(problems)


def _handler_configs() -> dict[str, Any]:
    registry = HandlerRegistry.with_plugins()
    return {name: registry.resolve(name).Config for name in _BUILTIN_TYPES}


def handler_option_drift(readme: str, example: str) -> list[str]:
    """Built-in handler options (and the keys every handler takes) that README's handler
    section or deploy/relay.example.toml never mention."""
    handlers_doc = _section(readme, "### Handlers (`relay.toml`)")
    keys = {f"common {name}": name for name in HandlerSpec.model_fields}
    for type_name, config in _handler_configs().items():
        keys.update({f"{type_name} {name}": name for name in config.model_fields})
    problems = []
    for where, name in keys.items():
        if not re.search(rf"`{name}\b|^{name} =", handlers_doc, re.MULTILINE):
            problems.append(f"{where}: not in README's handler section")
        if not re.search(rf"^#?\s*{name}\s*=|^#\s+{name}\s", example, re.MULTILINE):
            problems.append(f"{where}: not in deploy/relay.example.toml")
    return problems


def test_every_setting_is_in_the_environment_table() -> None:
    """Each `Settings` field (env name = field name upper-cased) has a row with its default,
    and every row names a real setting."""
    assert env_drift(README) == []


def test_every_mounted_route_is_in_the_http_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Method and path of every route the app mounts appear in README's HTTP table, and the
    table lists no route the app lacks."""
    monkeypatch.chdir(tmp_path)  # no stray ./relay.toml; the default handler writes here
    assert route_drift(README, mounted_routes(tmp_path)) == []


def test_every_webhook_and_api_status_is_documented() -> None:
    """Each status code the webhook and `/api/*` routes answer with is named in README's HTTP
    section, so a new refusal cannot ship undocumented."""
    http = _section(README, "## HTTP")
    sources = [
        REPO / "receiver" / "http" / name for name in ("webhooks.py", "api.py", "responses.py")
    ]
    sources.append(REPO / "receiver" / "upstream" / "statuses.py")
    text = "\n".join(path.read_text() for path in sources)
    codes = set(re.findall(r"\berror\(\s*(\d{3})\b", text))
    codes |= set(re.findall(r"\(\s*\w+,\s*(\d{3}),\s*\"", text))  # the upstream status table
    codes |= set(re.findall(r"status_code=(\d{3})", text))
    assert {"202", "400", "401", "402", "408", "413", "415", "503"} <= codes  # the regexes work
    assert sorted(code for code in codes if not re.search(rf"\b{code}\b", http)) == []


def test_every_handler_option_is_documented() -> None:
    """README's handler section and the example relay.toml name every option of every built-in
    handler's Config model and every key all handlers take."""
    assert handler_option_drift(README, EXAMPLE_TOML) == []


def test_the_checks_catch_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each check reports a removed row, an invented one and a changed default: they can fail."""
    removed = "\n".join(
        line
        for line in README.splitlines()
        if not line.startswith(("| `RELAY_LEASE_S`", "| `GET /metrics`"))
    )
    assert env_drift(removed) == ["RELAY_LEASE_S: not in README's environment table"]
    invented = README.replace("| `PORT` | listen port | `8000` |", "| `PORTS` | x | `8000` |")
    assert sorted(env_drift(invented)) == [
        "PORT: not in README's environment table",
        "PORTS: in README but not a Settings field",
    ]
    wrong_default = README.replace("| `RELAY_LEASE_S` |", "| `RELAY_LEASE_S` | x | `61` |\n|x")
    assert any("RELAY_LEASE_S: default `60`" in p for p in env_drift(wrong_default))

    monkeypatch.chdir(tmp_path)
    mounted = mounted_routes(tmp_path)
    assert route_drift(removed, mounted) == ["GET /metrics: mounted, not in README's HTTP table"]
    assert route_drift(README, mounted | {("POST", "/api/new")}) == [
        "POST /api/new: mounted, not in README's HTTP table"
    ]

    no_headers = EXAMPLE_TOML.replace('headers = { "X-Team" = "music" }', "")
    assert handler_option_drift(README, no_headers) == [
        "forward headers: not in deploy/relay.example.toml"
    ]
