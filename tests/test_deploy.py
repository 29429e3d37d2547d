"""The deploy files agree with the Procfile, the app and the configuration contract.

No Docker engine or PaaS runs here, so each file is parsed (tomllib, json, yaml) and checked:
the same start commands as the Procfile, `$PORT` honoured, port numbers that agree, health
checks on real routes, only real settings named, secrets never given literal values. The
Dockerfile's HEALTHCHECK command itself is run against a live relay.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from receiver.app import create_app
from receiver.config import Settings
from tests.conftest import REPO, Relay
from tests.servers import free_port

DEPLOY = REPO / "deploy"
SETTINGS = {name.upper() for name in Settings.model_fields}
"""Every environment variable the relay reads (DESIGN.md's contract, as receiver/config.py)."""
SECRETS = {
    "AIMUSIC_API_KEY",
    "AIMUSIC_WEBHOOK_SECRET",
    "RELAY_SECRET_KEY",
    "RELAY_ADMIN_TOKEN",
    "DATABASE_URL",
}
"""Never given a literal value in a file that is committed."""


def _procfile() -> dict[str, str]:
    lines = (REPO / "Procfile").read_text().splitlines()
    pairs = [line.split(":", 1) for line in lines if line.strip()]
    return {name.strip(): command.strip() for name, command in pairs}


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def _instruction(name: str) -> list[str]:
    return [rest for word, rest in _dockerfile() if word == name]


def _app_paths(tmp_path: Path) -> set[str]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'r.db'}", relay_secret_key="k" * 32)
    return {route.path for route in create_app(settings).routes if hasattr(route, "path")}


def _with_port(command: str, port: str) -> str:
    return command.replace("${PORT:-8000}", port).replace("$PORT", port)


def test_procfile_is_the_contract() -> None:
    """The Procfile's three processes, the reference for every platform file below."""
    procfile = _procfile()
    assert {"web", "worker", "release"} == set(procfile)
    assert "--port $PORT" in procfile["web"] and "--host 0.0.0.0" in procfile["web"]


def test_dockerfile_non_root_healthcheck_and_serve_command() -> None:
    """python:3.11-slim, a non-root USER before CMD, port 8000 exposed and set as PORT, a
    HEALTHCHECK on /healthz without curl, and CMD = the Procfile's web command on ${PORT}."""
    steps = _dockerfile()
    words = [word for word, _ in steps]
    assert ["python:3.11-slim"] == _instruction("FROM")
    [user] = _instruction("USER")
    assert user not in ("root", "0") and not user.startswith(("root:", "0:"))
    assert words.index("USER") < words.index("CMD")
    assert ["8000"] == _instruction("EXPOSE")
    env = " ".join(_instruction("ENV"))
    assert re.search(r"\bPORT=8000\b", env)

    [check] = _instruction("HEALTHCHECK")
    argv = json.loads(check.split(" CMD ", 1)[1])
    assert "python" == argv[0] and "/healthz" in argv[-1] and "curl" not in check

    [cmd] = _instruction("CMD")
    shell, flag, script = json.loads(cmd)
    assert ("sh", "-c") == (shell, flag)
    assert script.startswith("exec ")
    assert "${PORT:-8000}" in script
    web = _procfile()["web"]
    assert _with_port(web, "8000") == _with_port(script.removeprefix("exec "), "8000")
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert "*" in ignore and "!receiver" in ignore and "!handlers" in ignore


@pytest.mark.slow
def test_dockerfile_healthcheck_command_works(make_relay: Callable[..., Relay]) -> None:
    """The HEALTHCHECK's exact command exits 0 against a running relay on $PORT, and non-zero
    when nothing answers there."""
    [check] = _instruction("HEALTHCHECK")
    argv = json.loads(check.split(" CMD ", 1)[1])
    command = [sys.executable, *argv[1:]]
    relay = make_relay()
    env = {**os.environ, "PORT": str(relay.port)}
    up = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert 0 == up.returncode, up.stderr
    env["PORT"] = str(free_port())
    down = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert 0 != down.returncode


def _render() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "render.yaml").read_text()))


def _render_env(service: dict[str, Any], blueprint: dict[str, Any]) -> list[dict[str, Any]]:
    """A service's env entries, with its `fromGroup` groups expanded."""
    groups = {g["name"]: g["envVars"] for g in blueprint.get("envVarGroups", [])}
    entries: list[dict[str, Any]] = []
    for entry in service.get("envVars", []):
        entries.extend(groups[entry["fromGroup"]] if "fromGroup" in entry else [entry])
    return entries


def test_render_blueprint(tmp_path: Path) -> None:
    """Web and worker run the Procfile's commands, migrations run before deploy, the health
    check is a real route, DATABASE_URL comes from the declared database, both processes share
    one generated RELAY_SECRET_KEY, and secrets are generated or asked for, never written."""
    blueprint = _render()
    procfile = _procfile()
    services = {s["type"]: s for s in blueprint["services"]}
    assert {"web", "worker"} == set(services)
    web, worker = services["web"], services["worker"]
    assert procfile["web"] == web["startCommand"]
    assert procfile["worker"] == worker["startCommand"]
    assert procfile["release"] == web["preDeployCommand"]
    assert web["healthCheckPath"] in _app_paths(tmp_path)
    databases = {d["name"] for d in blueprint["databases"]}
    for service in (web, worker):
        env = _render_env(service, blueprint)
        keys = [e["key"] for e in env]
        assert len(keys) == len(set(keys))
        assert set(keys) <= SETTINGS
        by_key = {e["key"]: e for e in env}
        assert by_key["DATABASE_URL"]["fromDatabase"]["name"] in databases
        assert "connectionString" == by_key["DATABASE_URL"]["fromDatabase"]["property"]
        assert by_key["RELAY_SECRET_KEY"]["generateValue"] is True
        assert by_key["AIMUSIC_API_KEY"]["sync"] is False
        for key in SECRETS:
            assert "value" not in by_key.get(key, {}), key
    [group] = blueprint["envVarGroups"]
    assert "RELAY_SECRET_KEY" in {e["key"] for e in group["envVars"]}


def _fly() -> dict[str, Any]:
    return tomllib.loads((DEPLOY / "fly.toml").read_text())


def test_fly_config(tmp_path: Path) -> None:
    """web/worker processes run the Procfile's commands on the port fly routes to (PORT =
    internal_port), the release command migrates, checks hit a real route, [env] names only
    real settings and holds no secret."""
    fly = _fly()
    procfile = _procfile()
    port = fly["env"]["PORT"]
    assert int(port) == fly["http_service"]["internal_port"]
    assert _with_port(procfile["web"], port) == fly["processes"]["web"]
    assert procfile["worker"] == fly["processes"]["worker"]
    assert procfile["release"] == fly["deploy"]["release_command"]
    assert ["web"] == fly["http_service"]["processes"]
    paths = _app_paths(tmp_path)
    assert fly["http_service"]["checks"]
    for check in fly["http_service"]["checks"]:
        assert check["path"] in paths
    assert set(fly["env"]) <= SETTINGS
    assert not set(fly["env"]) & SECRETS
    assert fly["kill_timeout"] > Settings().relay_shutdown_grace_s


def test_heroku_app_json() -> None:
    """Postgres add-on, Python buildpack (it finds requirements.txt), generated secrets for
    RELAY_SECRET_KEY and RELAY_ADMIN_TOKEN, a required API key, a web and a worker dyno that
    the Procfile defines, and only real settings."""
    app = json.loads((DEPLOY / "app.json").read_text())
    addons = [a if isinstance(a, str) else a["plan"] for a in app["addons"]]
    assert any(a.split(":")[0] == "heroku-postgresql" for a in addons)
    assert [{"url": "heroku/python"}] == app["buildpacks"]
    requirements = (REPO / "requirements.txt").read_text().split()
    assert "." in requirements
    env = app["env"]
    assert set(env) <= SETTINGS
    assert "secret" == env["RELAY_SECRET_KEY"]["generator"]
    assert "secret" == env["RELAY_ADMIN_TOKEN"]["generator"]
    assert env["AIMUSIC_API_KEY"]["required"] is True
    for key in SECRETS & set(env):
        assert "value" not in env[key], key
    assert {"web", "worker"} == set(app["formation"])
    assert set(app["formation"]) <= set(_procfile())


def test_commands_are_real_cli_verbs() -> None:
    """Every `aimusic-relay …` the deploy files run is a command the CLI has."""
    from typer.main import get_command

    from receiver.cli import app

    cli = get_command(app)
    commands = [
        *_procfile().values(),
        *(
            s.get(k, "")
            for s in _render()["services"]
            for k in ("startCommand", "preDeployCommand")
        ),
        *_fly()["processes"].values(),
        _fly()["deploy"]["release_command"],
    ]
    for command in filter(None, commands):
        words = shlex.split(command)
        assert "aimusic-relay" == words[0]
        group = cli
        for word in words[1:]:
            if word.startswith("-"):
                break
            sub = group.get_command(None, word)
            assert sub is not None, command
            group = sub


GRAFANA_CHARTS = {
    "aimusic_relay_callbacks_total",
    "aimusic_relay_ingest_seconds_bucket",
    "aimusic_relay_deliveries_total",
    "aimusic_relay_queue_depth_by_handler",
    "aimusic_relay_dead_letters",
    "aimusic_relay_store_commit_seconds_bucket",
}
"""What the Grafana dashboard must chart (callbacks by outcome, ingest latency, deliveries by
handler and outcome, queue depth, dead letters, store commit time)."""


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


@pytest.mark.slow
def test_grafana_dashboard_charts_metrics_the_relay_exports(
    make_relay: Callable[..., Relay],
) -> None:
    """deploy/grafana-dashboard.json is an importable Grafana dashboard: a `DS_PROMETHEUS`
    datasource input used by every query, unique panel ids, and each expression names only
    series a running relay's `/metrics` really exports — covering the charts teams need."""
    from prometheus_client.parser import text_string_to_metric_families

    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    [source] = [i for i in dashboard["__inputs"] if i["name"] == "DS_PROMETHEUS"]
    assert (source["type"], source["pluginId"]) == ("datasource", "prometheus")
    assert dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    panels = [p for p in _panels(dashboard) if p.get("type") != "row"]
    assert len({p["id"] for p in _panels(dashboard)}) == len(_panels(dashboard))

    relay = make_relay()
    text = httpx.get(f"{relay.url}/metrics", timeout=10).text
    # A labelled family with no sample yet (no upstream error so far) is still declared.
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    exported = {
        name
        for family in text_string_to_metric_families(text)
        for name in [
            *(s.name for s in family.samples),
            *(family.name + suffix for suffix in suffixes.get(family.type, [""])),
        ]
    }
    named: set[str] = set()
    for panel in panels:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            names = set(re.findall(r"\baimusic_relay_[a-z0-9_]+", target["expr"]))
            assert names, f"{panel['title']}: {target['expr']} names no relay metric"
            assert names <= exported, f"{panel['title']}: not exported: {names - exported}"
            named |= names
    assert GRAFANA_CHARTS <= named
