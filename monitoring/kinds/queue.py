"""The ``queue`` kind: health of the django-q2 task queue this console runs on.

Backlog, failures in the last hour, error rate, age of the oldest queued task and clusters alive.
The value is the number of queued tasks (the check's warn / crit, default 10 / 50); the other
measures carry their own limits in the config and raise the status on their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from monitoring.kinds import CheckKind, ConfigError, Observation, check_known_keys, register
from monitoring.kinds.common import duration
from monitoring.models import CheckStatus, worst
from monitoring.observability.readings import QueueReading, read_queue
from opsconsole.env import format_duration

if TYPE_CHECKING:
    from monitoring.checks.prober import ProbeContext
    from monitoring.models import Check

# Defaults from the operations documents: failures 1-5 warning, more critical; error rate
# 5-10 % warning, more critical; a task waiting over 10 minutes is a warning.
QUEUE_DEFAULTS: dict[str, float | int | None] = {
    "failures_warn": 0,
    "failures_crit": 5,
    "error_rate_warn": 5.0,
    "error_rate_crit": 10.0,
    "rate_min_tasks": 20,
    "oldest_warn": 600.0,
    "oldest_crit": None,
    "min_clusters": 1,
}


@register
class QueueKind(CheckKind):
    name = "queue"
    label = "Task queue (django-q2)"
    unit = " queued"
    default_warn = 10
    default_crit = 50

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        check_known_keys(config, {"queue", *QUEUE_DEFAULTS}, errors)
        normalised: dict[str, Any] = {**QUEUE_DEFAULTS, **config}
        for key in ("failures_warn", "failures_crit", "rate_min_tasks", "min_clusters"):
            value = normalised[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                errors[f"config.{key}"] = "must be a whole number ≥ 0"
        for key in ("error_rate_warn", "error_rate_crit"):
            value = normalised[key]
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 <= value <= 100
            ):
                errors[f"config.{key}"] = "must be a percentage from 0 to 100"
        for key in ("oldest_warn", "oldest_crit"):
            normalised[key] = duration(config, key, errors, QUEUE_DEFAULTS[key])
        if "queue" in config and (not isinstance(config["queue"], str) or not config["queue"]):
            errors["config.queue"] = "must be a django-q2 queue (cluster) name"
        if errors:
            raise ConfigError(errors)
        return normalised

    def observe(self, check: Check, ctx: ProbeContext) -> Observation:
        config = {**QUEUE_DEFAULTS, **check.config}
        reading = read_queue(queue=config.get("queue"))
        if not reading.reachable:  # the broker (Redis) being down is the finding
            return Observation(error=f"queue broker unreachable: {reading.error}")
        warn, crit, _ = check.thresholds()
        problems = judge(reading, config, warn, crit)
        queued, alive = reading.queued or 0, reading.clusters_alive or 0
        failures, done = reading.failed_last_hour, reading.finished_last_hour
        status = worst(*(level for level, _ in problems)) if problems else CheckStatus.OK
        summary = (
            f"{queued} queued, {reading.in_flight} in flight, "
            f"{failures} failed / {done} done in the last hour, "
            f"{alive} cluster{'s' if alive != 1 else ''} alive"
        )
        message = "; ".join(
            text for _, text in sorted(problems, key=lambda p: p[0] != CheckStatus.CRITICAL)
        )
        return Observation(
            value=queued,
            status=status,
            message=f"{message} ({summary})" if message else summary,
            details={
                "queued": queued,
                "in_flight": reading.in_flight,
                "failures_last_hour": failures,
                "done_last_hour": done,
                "error_rate_pct": reading.error_rate_pct or 0.0,
                "oldest_queued_seconds": reading.oldest_queued_seconds,
                "clusters_alive": alive,
                "clusters_source": reading.clusters_source,
                "broker": reading.broker_info,
            },
        )


def grade(value: float, warn: float | None, crit: float | None) -> str:
    """The level of one measure: over ``crit`` critical, over ``warn`` warning."""
    if crit is not None and value > crit:
        return CheckStatus.CRITICAL
    if warn is not None and value > warn:
        return CheckStatus.WARNING
    return CheckStatus.OK


def judge(
    reading: QueueReading, config: dict[str, Any], warn: float | None, crit: float | None
) -> list[tuple[str, str]]:
    """(level, finding) for each measure of ``reading`` over its threshold in ``config``
    (``QUEUE_DEFAULTS`` merged with a check's own); ``warn`` / ``crit`` bound the backlog."""
    problems: list[tuple[str, str]] = []

    def add(
        value: float, warn: float | None, crit: float | None, text: str, unit: str = ""
    ) -> None:
        level = grade(value, warn, crit)
        if level != CheckStatus.OK:
            # Name the rule crossed, so the reader knows why this is a problem at all.
            limit = crit if level == CheckStatus.CRITICAL else warn
            shown = format_duration(limit) if unit == "duration" else f"{limit:g}{unit}"
            problems.append((level, f"{text}, above {level} threshold {shown}"))

    alive = reading.clusters_alive or 0
    # A stalled queue explains every other symptom, so it is named first.
    if alive < config["min_clusters"]:
        problems.append(
            (
                CheckStatus.CRITICAL,
                f"no cluster alive ({alive} of {config['min_clusters']} expected): "
                "the queue is stalled; start `manage.py qcluster`",
            )
        )
    queued = reading.queued or 0
    add(queued, warn, crit, f"{queued} tasks queued")
    failures = reading.failed_last_hour
    add(
        failures,
        config["failures_warn"],
        config["failures_crit"],
        f"{failures} failed in the last hour",
    )
    done = reading.finished_last_hour
    if done >= config["rate_min_tasks"]:
        rate = reading.error_rate_pct or 0.0
        add(
            rate,
            config["error_rate_warn"],
            config["error_rate_crit"],
            f"error rate {rate:g} % of {done} tasks",
            " %",
        )
    oldest = reading.oldest_queued_seconds
    if oldest is not None:
        add(
            oldest,
            config["oldest_warn"],
            config["oldest_crit"],
            f"oldest queued task waiting {format_duration(oldest)}",
            "duration",
        )
    return problems
