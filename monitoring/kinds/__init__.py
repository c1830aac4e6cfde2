"""The check-kind registry.

A kind validates its own config and turns one probe into an ``Observation``. Kinds are small
classes registered in ``AppConfig.ready``; other apps add theirs the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from opsconsole.redaction import MASK, mask_config, mask_text

if TYPE_CHECKING:
    from monitoring.checks.prober import ProbeContext
    from monitoring.models import Check


class ConfigError(Exception):
    """A check's config is invalid; ``errors`` maps a field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]):
        # Messages quote the offending value ("got 'ftp://user:pw@host'"): secret-shaped parts
        # are masked here, so no caller (loadchecks, admin, API) can show them.
        self.errors = {key: mask_text(str(message)) for key, message in errors.items()}
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


@dataclass
class Observation:
    value: float | None = None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    # A status the kind imposes whatever the thresholds say (wrong HTTP status, none running).
    status: str | None = None
    # The probe could not measure at all (unreachable, timed out): always critical.
    error: str | None = None
    # Kind-private state to keep on the check for the next run.
    state: dict[str, Any] | None = None
    # The data watched is not there (no rows, NULL, a count of zero): during a new check's
    # start-up grace this is "unknown", not an alarm (``Check.evaluate``).
    no_data: bool = False


class CheckKind:
    name: ClassVar[str]
    label: ClassVar[str] = ""
    unit: ClassVar[str] = ""
    default_warn: ClassVar[float | None] = None
    default_crit: ClassVar[float | None] = None
    default_direction: ClassVar[str] = "above"
    # Pushed kinds (heartbeats) record runs when pings arrive; runchecks only looks at time.
    pushed: ClassVar[bool] = False
    # Config keys whose values are secrets, masked in the UI, logs and API.
    secret_fields: ClassVar[tuple[str, ...]] = ("password", "token", "secret", "api_key")

    # The kind runs a query or connects to a DSN taken from its config: who may author those
    # is restricted (superusers and the monitoring.author_sql_checks permission).
    runs_sql: ClassVar[bool] = False

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """Returns the normalised config or raises ConfigError."""
        return dict(config)

    def authored_sql(self, config: dict[str, Any]) -> dict[str, Any] | None:
        """The query and connection target a person wrote into this (validated) config, or None
        when the check runs only SQL the console composes itself."""
        if not self.runs_sql or not ({"sql", "dsn"} & config.keys()):
            return None
        return {key: config.get(key) for key in ("sql", "dsn", "alias")}

    def default_thresholds(self, config: dict[str, Any]) -> tuple[float | None, float | None, str]:
        return self.default_warn, self.default_crit, self.default_direction

    def unit_for(self, config: dict[str, Any]) -> str:
        return self.unit

    def observe(self, check: Check, ctx: ProbeContext) -> Observation:
        raise NotImplementedError


_registry: dict[str, CheckKind] = {}


def register(kind_class: type[CheckKind]) -> type[CheckKind]:
    _registry[kind_class.name] = kind_class()
    return kind_class


def get_kind(name: str) -> CheckKind:
    try:
        return _registry[name]
    except KeyError:
        raise ConfigError(
            {"kind": f"unknown kind {name!r}; known kinds: {', '.join(sorted(_registry))}"}
        ) from None


def kind_names() -> list[str]:
    return sorted(_registry)


# --- helpers shared by kinds -----------------------------------------------------------------


def mask_secrets(value: Any, secret_fields: tuple[str, ...] = CheckKind.secret_fields) -> Any:
    """A copy of a config with every secret masked (see ``opsconsole.redaction``); keys named in
    ``secret_fields`` are masked too, whatever their name looks like."""
    masked = mask_config(value)
    if isinstance(masked, dict):
        for key in masked:
            if any(word in str(key).lower() for word in secret_fields):
                masked[key] = MASK
    return masked


def require_str(
    config: dict[str, Any], key: str, errors: dict[str, str], *, required: bool = True
) -> str | None:
    value = config.get(key)
    if value is None:
        if required:
            errors[f"config.{key}"] = "is required"
        return None
    if not isinstance(value, str) or not value.strip():
        errors[f"config.{key}"] = "must be a non-empty string"
        return None
    return value


def check_known_keys(config: dict[str, Any], allowed: set[str], errors: dict[str, str]) -> None:
    for key in config:
        if key not in allowed:
            errors[f"config.{key}"] = f"unknown setting; allowed: {', '.join(sorted(allowed))}"
