"""Strict environment parsing: a malformed value stops start-up with a message naming the variable."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

from opsconsole.timeouts import SQLITE_BUSY_TIMEOUT

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as ``30s``, ``5m``, ``1h``, ``1d`` or ``100ms``.

    Raises ValueError with an operator-readable message.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30s, 5m, 1h, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        return float(value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"expected a duration such as 30s, 5m, 1h, 1d, got {value!r}")


def format_duration(seconds: float) -> str:
    """A short human form: 45s, 5m, 1h 30m, 2d 3h."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m" + (f" {sec}s" if sec and minutes < 10 else "")
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h" + (f" {minutes}m" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"{days}d" + (f" {hours}h" if hours else "")


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None else value.strip()


def _fail(name: str, problem: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"Environment variable {name}: {problem}")


def env_str(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise _fail(name, f"expected true or false, got {value!r}")


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise _fail(name, f"expected a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise _fail(name, f"must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise _fail(name, f"must be at most {maximum}, got {number}")
    return number


def env_duration(
    name: str, default: float, *, minimum: float = 0.0, maximum: float | None = None
) -> float:
    """Seconds; accepts ``30``, ``30s``, ``100ms``, ``5m``."""
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise _fail(name, str(exc)) from None
    if seconds < minimum:
        raise _fail(name, f"must be at least {minimum}s, got {value!r}")
    if maximum is not None and seconds > maximum:
        raise _fail(name, f"must be at most {maximum:g}s, got {value!r}")
    return seconds


def env_milliseconds(
    name: str, *, minimum: float = 0.0, maximum: float | None = None
) -> float | None:
    """Seconds from a variable that tools written in JavaScript give in milliseconds
    (``60000``); a value with a unit (``60s``, ``5m``) is taken as written. None when unset."""
    value = _raw(name)
    if value is None or value == "":
        return None
    try:
        seconds = float(value) / 1000 if re.fullmatch(r"\d+(?:\.\d+)?", value) else None
        if seconds is None:
            seconds = parse_duration(value)
    except ValueError as exc:
        raise _fail(name, f"{exc} (a bare number is milliseconds)") from None
    if seconds < minimum:
        raise _fail(
            name, f"must be at least {minimum:g}s (a bare number is milliseconds), got {value!r}"
        )
    if maximum is not None and seconds > maximum:
        raise _fail(name, f"must be at most {maximum:g}s, got {value!r}")
    return seconds


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


_HOST_RE = re.compile(r"^\.?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


def env_host_list(name: str) -> list[str]:
    """Comma-separated host names (``api.example.com``), ``.example.com`` for a domain and its
    subdomains, IP addresses (IPv6 in brackets or bare). Lower-cased, without brackets. A URL,
    a port or a path is refused: the list is compared with host names only."""
    hosts: list[str] = []
    for item in env_list(name, []):
        host = item.lower()
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if ":" in host:
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise _fail(
                    name, f"{item!r} is not a host name (no scheme, port or path)"
                ) from None
        elif not _HOST_RE.match(host):
            raise _fail(name, f"{item!r} is not a host name (no scheme, port or path)")
        hosts.append(host)
    return hosts


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _raw(name)
    if value is None or value == "":
        return default
    if value.lower() not in choices:
        raise _fail(name, f"expected one of {', '.join(choices)}, got {value!r}")
    return value.lower()


def env_json_object(name: str) -> dict[str, Any]:
    value = _raw(name)
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise _fail(name, f"not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(parsed, dict):
        raise _fail(name, 'expected a JSON object such as {"source": "module.function"}')
    return parsed


def parse_database_url(url: str, name: str = "DATABASE_URL") -> dict[str, Any]:
    """A Django DATABASES entry from ``sqlite:///path`` or ``postgres://user:pass@host:port/db``."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path)
        if url.startswith("sqlite:////"):
            path = "/" + path.lstrip("/")
        else:
            path = path.lstrip("/")
        if not path:
            raise _fail(
                name, "a sqlite URL needs a file path, e.g. sqlite:///data/opsconsole.sqlite3"
            )
        return sqlite_database(path)
    if parsed.scheme in ("postgres", "postgresql", "pgsql"):
        database = unquote(parsed.path.lstrip("/"))
        if not database:
            raise _fail(
                name, "a postgres URL needs a database name, e.g. postgres://user@host:5432/ops"
            )
        try:
            port = parsed.port
        except ValueError:
            raise _fail(name, "the port is not a number") from None
        options: dict[str, Any] = {}
        for key, values in parse_qs(parsed.query).items():
            options[key] = values[-1]
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": database,
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(port or ""),
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    raise _fail(name, f"unsupported scheme {parsed.scheme!r}; use sqlite:///PATH or postgres://…")


def sqlite_database(path: str) -> dict[str, Any]:
    # WAL lets readers run beside the single writer; IMMEDIATE takes the write lock at BEGIN
    # so two writers queue on the busy timeout instead of failing with "database is locked"
    # when a read transaction tries to upgrade.
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        "CONN_MAX_AGE": 60,
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            # The leases and claims of opsconsole/timeouts.py are derived from this wait.
            "timeout": SQLITE_BUSY_TIMEOUT,
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)};"
            ),
        },
    }
