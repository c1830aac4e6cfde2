"""The ``backlog`` check kind: how many entries wait, or how long the oldest has waited."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backlog.services import pending_count_and_oldest
from monitoring.kinds import CheckKind, ConfigError, Observation, check_known_keys, register
from monitoring.kinds.common import choice
from opsconsole.env import format_duration

if TYPE_CHECKING:
    from monitoring.checks.prober import ProbeContext
    from monitoring.models import Check

# metric -> (warn, crit, unit). Processing runs every 5 minutes, so an entry pending for
# 10 minutes has been missed by at least one run.
METRICS: dict[str, tuple[float, float, str]] = {
    "pending": (500, 5000, ""),
    "oldest_pending_age": (600, 3600, " s"),
}


@register
class BacklogKind(CheckKind):
    name = "backlog"
    label = "Backlog of pending syncs"

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        check_known_keys(config, {"metric", "source"}, errors)
        choice(config, "metric", tuple(METRICS), errors, "pending")
        source = config.get("source")
        if source is not None and (not isinstance(source, str) or not source):
            errors["config.source"] = "must be a non-empty string (or left out for every source)"
        if errors:
            raise ConfigError(errors)
        return dict(config)

    def default_thresholds(self, config: dict[str, Any]) -> tuple[float | None, float | None, str]:
        warn, crit, _ = METRICS.get(config.get("metric", "pending"), METRICS["pending"])
        return warn, crit, "above"

    def unit_for(self, config: dict[str, Any]) -> str:
        return METRICS.get(config.get("metric", "pending"), METRICS["pending"])[2]

    def observe(self, check: Check, ctx: ProbeContext) -> Observation:
        config = self.validate_config(check.config)
        source = config.get("source")
        pending, oldest_age = pending_count_and_oldest(source)
        where = f" for source {source}" if source else ""
        age_text = (
            f"oldest waiting {format_duration(oldest_age)}"
            if oldest_age is not None
            else "none waiting"
        )
        message = f"{pending} pending{where}, {age_text}"
        details = {"pending": pending, "oldest_pending_age_seconds": oldest_age, "source": source}
        if config.get("metric", "pending") == "oldest_pending_age":
            return Observation(value=round(oldest_age or 0.0, 1), message=message, details=details)
        return Observation(value=float(pending), message=message, details=details)
