"""Settings from the environment, and the handler file (`relay.toml`).

Every user error becomes a `ConfigError` whose message names the key, what is wrong with the
value and where it came from (the environment, or the file and line), so start-up can print
one line instead of a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from receiver.errors import ConfigError
from receiver.redact import MIN_SECRET_CHARS, url_passwords

__all__ = [
    "LOG_LEVELS",
    "Settings",
    "http_url",
    "interpolate",
    "is_public_https",
    "load_settings",
    "read_relay_toml",
    "secret_key_path",
]

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
"""What `RELAY_LOG_LEVEL` takes (the stdlib's levels; any other word would crash start-up)."""

_SECRET_FIELDS = frozenset(
    {"aimusic_api_key", "aimusic_webhook_secret", "relay_secret_key", "relay_admin_token"}
)


class Settings(BaseSettings):
    """The contract's environment variables; names match the variables, lower-cased."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, frozen=True)

    aimusic_api_key: SecretStr | None = None
    aimusic_base_url: str = "https://api.aimusicapi.ai"
    aimusic_webhook_secret: SecretStr | None = None
    relay_public_url: str | None = None
    relay_secret_key: SecretStr | None = None
    database_url: str = "sqlite:///./relay.db"
    relay_config: Path | None = None
    relay_admin_token: SecretStr | None = None
    relay_poll_grace_s: float = Field(default=90.0, gt=0)
    relay_poll_max_interval_s: float = Field(default=60.0, gt=0)
    relay_task_deadline_s: float = Field(default=1800.0, gt=0)
    relay_poll_rate_per_s: float = Field(default=2.0, gt=0)
    relay_callbacks: Literal["auto", "on", "off"] = "auto"
    relay_allow_private_networks: bool = False
    relay_max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    relay_body_timeout_s: float = Field(default=10.0, gt=0)
    relay_max_clips_per_callback: int = Field(default=64, ge=1, le=10_000)
    relay_spool_dir: Path = Path(tempfile.gettempdir()) / "aimusic-relay-spool"
    relay_lease_s: float = Field(default=60.0, gt=0)
    relay_db_pool_size: int = Field(default=5, ge=1, le=100)
    relay_db_pool_timeout_s: float = Field(default=10.0, gt=0)
    relay_shutdown_grace_s: float = Field(default=25.0, ge=0)
    relay_log_level: str = "info"
    relay_log_format: Literal["auto", "json", "console"] = "auto"
    port: int = Field(default=8000, ge=1, le=65535)

    @field_validator("aimusic_base_url", "relay_public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return http_url(value, "such as https://relay.example.com")

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        _check_database_url(value)
        return value

    @field_validator("relay_log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"use one of {', '.join(LOG_LEVELS)}")
        return level

    @property
    def public_url(self) -> str:
        """Where the provider reaches us; defaults to this machine for the local demo."""
        return self.relay_public_url or f"http://localhost:{self.port}"

    @property
    def webhook_secrets(self) -> list[str]:
        """Secrets accepted on the shared route, newest first (comma-separated for rotation)."""
        if self.aimusic_webhook_secret is None:
            return []
        raw = self.aimusic_webhook_secret.get_secret_value()
        return [part.strip() for part in raw.split(",") if part.strip()]

    @property
    def secret_keys(self) -> list[str]:
        """Keys for tokens and per-task secrets; the first signs, all verify."""
        if self.relay_secret_key is None:
            raise ConfigError("RELAY_SECRET_KEY is not set (load_settings fills it for SQLite)")
        raw = self.relay_secret_key.get_secret_value()
        return [part.strip() for part in raw.split(",") if part.strip()]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path:
        return Path(self.database_url.split(":///", 1)[1] if ":///" in self.database_url else "")

    @property
    def config_path(self) -> Path | None:
        """The handler file: `RELAY_CONFIG`, else `./relay.toml` if present, else none."""
        if self.relay_config is not None:
            return self.relay_config
        default = Path("relay.toml")
        return default if default.exists() else None

    @property
    def upstream_is_local(self) -> bool:
        """True when the upstream is the sandbox on this machine or a private network."""
        return _is_private_host(urlsplit(self.aimusic_base_url).hostname or "")

    @property
    def callbacks_enabled(self) -> bool:
        """Send `webhook_url` on submit? `auto`: when the provider can reach us (public HTTPS),
        or when the upstream is itself local (the sandbox), which can reach a local relay."""
        if self.relay_callbacks != "auto":
            return self.relay_callbacks == "on"
        return self.upstream_is_local or is_public_https(self.public_url)

    def secret_values(self) -> list[str]:
        """Every secret value (the database password too), so logs, the dashboard and doctor
        can hide them wherever they appear."""
        values: list[str] = []
        for name in _SECRET_FIELDS:
            secret = getattr(self, name)
            if secret is not None:
                parts = secret.get_secret_value().split(",")
                values.extend(p for p in parts if len(p) >= MIN_SECRET_CHARS)
        values.extend(p for p in url_passwords(self.database_url) if len(p) >= MIN_SECRET_CHARS)
        return values


def is_public_https(url: str) -> bool:
    """True for an https URL whose host is not this machine or a private network."""
    parts = urlsplit(url)
    return parts.scheme == "https" and not _is_private_host(parts.hostname or "")


def _is_private_host(host: str) -> bool:
    if host in ("localhost", "") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global


_SQLITE_PATHS = (
    "(relative to the working directory; sqlite:////var/lib/relay/relay.db for an absolute path)"
)
_SQLITE_FORM = f"sqlite:///path/to/relay.db {_SQLITE_PATHS}"
_POSTGRES_FORM = "postgresql://user:password@host:5432/dbname"


def _check_database_url(url: str) -> None:
    """Refuse a DATABASE_URL no store can open, saying which form it should take.

    Checked with the other settings, not when the store opens, because the SQLite path also
    says where the secret key file lives: `sqlite://relay.db` used to crash deriving it."""
    scheme, _, rest = url.partition(":")
    if scheme == "sqlite":
        if rest.startswith("//") and not rest.startswith("///") and rest[2:]:
            raise ValueError(
                f"two slashes make {rest[2:]!r} a host, not a file: write "
                f"sqlite:///{rest[2:]} {_SQLITE_PATHS}"
            )
        if not rest.startswith("///"):
            raise ValueError(f"a SQLite URL has three slashes before the path: {_SQLITE_FORM}")
        path = rest[3:]
        if path in ("", ":memory:") or path.endswith("/") or Path(path).name in ("", ".", ".."):
            raise ValueError(f"names no database file: write it as {_SQLITE_FORM}")
        return
    if scheme in ("postgres", "postgresql") or scheme.startswith("postgresql+"):
        parts = urlsplit(url)
        if not rest.startswith("//") or not (
            parts.hostname or parts.path.strip("/") or "host=" in parts.query
        ):
            raise ValueError(f"names no server or database: write it as {_POSTGRES_FORM}")
        return
    raise ValueError(f"use sqlite:///path/to/relay.db or {_POSTGRES_FORM}")


def load_settings(env: dict[str, str] | None = None, *, read_only: bool = False) -> Settings:
    """Read and check the environment; fill a SQLite secret key if none is set.

    `read_only` (for `doctor`, which must change nothing): an existing key file is read, but
    none is created; without one `relay_secret_key` stays None."""
    try:
        settings = Settings(**_from_env(env)) if env is not None else Settings()
    except ValidationError as exc:
        raise ConfigError(_describe_env_errors(exc, env)) from None
    if settings.relay_secret_key is None:
        if not settings.is_sqlite:
            raise ConfigError(
                "RELAY_SECRET_KEY: not set. It is required with PostgreSQL so every process "
                "signs and verifies alike; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        key = _stored_secret_key(secret_key_path(settings), create=not read_only)
        if key is not None:
            settings = settings.model_copy(update={"relay_secret_key": SecretStr(key)})
    return settings


def secret_key_path(settings: Settings) -> Path:
    """Where a SQLite deployment keeps its generated key: beside the database file."""
    db_path = settings.sqlite_path
    return db_path.with_name(db_path.name + ".secret")


def _from_env(env: dict[str, str]) -> dict[str, Any]:
    fields = Settings.model_fields
    return {k.lower(): v for k, v in env.items() if k.lower() in fields}


_URL_PASSWORD = re.compile(r"(://[^/:@]*:)[^/@]*@")
"""The password in `scheme://user:password@host`: a wrong DATABASE_URL is shown without it."""


def _describe_env_errors(exc: ValidationError, env: dict[str, str] | None) -> str:
    source = env if env is not None else os.environ
    lines = []
    for error in exc.errors():
        key = str(error["loc"][0]).upper() if error["loc"] else "?"
        value = source.get(key, "")
        if key.lower() in _SECRET_FIELDS:
            shown = "(hidden)"
        else:
            shown = repr(_URL_PASSWORD.sub(r"\1(hidden)@", value))
        message = error["msg"].removeprefix("Value error, ")  # pydantic's, not news to anyone
        lines.append(f"{key}={shown} (from the environment): {message}")
    return "; ".join(lines)


def _stored_secret_key(key_path: Path, *, create: bool = True) -> str | None:
    """A key generated once and kept beside the SQLite file, so restarts verify old tokens;
    None when there is none yet and `create` is off."""
    unset = "or set RELAY_SECRET_KEY"
    try:
        if key_path.exists():
            key = key_path.read_text().strip()
            if not key:
                raise ConfigError(
                    f"{key_path} (the generated RELAY_SECRET_KEY) is empty: delete it to have "
                    f"a new one made (callback URLs already handed out stop verifying), {unset}"
                )
            return key
        if not create:
            return None
        key_path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(32)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
    except OSError as exc:
        raise ConfigError(
            f"cannot keep the generated RELAY_SECRET_KEY in {key_path}: {exc.strerror}; "
            f"fix DATABASE_URL's directory, {unset}"
        ) from None
    return key


def read_relay_toml(path: Path) -> tuple[str, dict[str, Any]]:
    """The text and parsed tables of relay.toml: the handlers and the chat apps each read
    their own tables from it, and both report a file they cannot use the same way."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"RELAY_CONFIG: cannot read {path}: {exc.strerror}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def toml_line(text: str, header: str, key: str | None = None, occurrence: int = 0) -> int | None:
    """The 1-based line of `key = …` inside the `occurrence`-th table of `text` whose header
    line matches the pattern `header` (that header's own line when `key` is None or not in the
    table); None when there is no such table. Best effort, for `file:line` in config errors."""
    lines = text.splitlines()
    starts = [n for n, line in enumerate(lines) if re.match(header, line)]
    if occurrence >= len(starts):
        return None
    start = starts[occurrence]
    if key is None:
        return start + 1
    end = next(
        (n for n in range(start + 1, len(lines)) if lines[n].lstrip().startswith("[")), len(lines)
    )
    pattern = re.compile(rf"\s*{re.escape(key)}\s*=")
    return next((n for n in range(start + 1, end) if pattern.match(lines[n])), start) + 1


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def http_url(value: str | None, hint: str) -> str | None:
    """A base URL setting, without its trailing slash; `hint` ends the error message."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http:// or https:// URL {hint}")
    return value.rstrip("/")


def interpolate(value: Any, where: str, env: dict[str, str] | None = None) -> Any:
    """Replace `${VAR}` (or `${VAR:-default}`) in every string inside `value`."""
    source = os.environ if env is None else env
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in source:
                return source[name]
            if default is not None:
                return default
            raise ConfigError(f"{where}: ${{{name}}} is not set in the environment")

        return _ENV_REFERENCE.sub(replace, value)
    if isinstance(value, list):
        return [interpolate(item, where, env) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item, where, env) for key, item in value.items()}
    return value
