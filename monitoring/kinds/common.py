"""Small validation helpers shared by check kinds."""

from __future__ import annotations

from typing import Any

from opsconsole.env import parse_duration


def positive_number(
    config: dict[str, Any], key: str, errors: dict[str, str], default: float
) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        errors[f"config.{key}"] = f"must be a positive number, got {value!r}"
        return default
    return float(value)


def duration(
    config: dict[str, Any], key: str, errors: dict[str, str], default: float | None
) -> float | None:
    if key not in config or config[key] is None:
        return default
    try:
        return parse_duration(config[key])
    except ValueError as exc:
        errors[f"config.{key}"] = str(exc)
        return default


def choice(
    config: dict[str, Any], key: str, choices: tuple[str, ...], errors: dict[str, str], default: str
) -> str:
    value = config.get(key, default)
    if value not in choices:
        errors[f"config.{key}"] = f"must be one of {', '.join(choices)}, got {value!r}"
        return default
    return value


def accept_database_key(config: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    """``database: NAME`` is the check file's spelling of ``alias: NAME``."""
    if "database" not in config:
        return config
    if "alias" in config:
        errors["config.database"] = "give database or alias (the same thing), not both"
        return config
    config = dict(config)
    config["alias"] = config.pop("database")
    return config


def validate_database_target(config: dict[str, Any], errors: dict[str, str]) -> None:
    """A Django database alias (default ``default``) or a postgres:// / sqlite:/// DSN."""
    from django.conf import settings

    if "alias" in config and "dsn" in config:
        errors["config.dsn"] = "give either alias or dsn, not both"
    if "dsn" in config:
        dsn = config["dsn"]
        if not isinstance(dsn, str) or not dsn.startswith(
            ("postgres://", "postgresql://", "sqlite:///")
        ):
            errors["config.dsn"] = "must be a postgres:// or sqlite:/// URL"
    else:
        alias = config.get("alias", "default")
        if alias not in settings.DATABASES:
            errors["config.alias"] = (
                f"unknown database alias {alias!r}; configured: {', '.join(settings.DATABASES)}"
            )
