"""The ``queue`` kind: health of the django-q2 task queue this console runs on.

Backlog, failures in the last hour, error rate, age of the oldest queued task and clusters alive.
The value is the number of queued tasks (the check's warn / crit, default 10 / 50); the other
measures carry their own limits in the config and raise the status on their own.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from monitoring.kinds import CheckKind, ConfigError, Observation, check_known_keys, register
from monitoring.kinds.common import duration
from monitoring.models import worst
from opsconsole.env import format_duration, parse_database_url

if TYPE_CHECKING:
    from datetime import datetime

    from monitoring.checks.runner import ProbeContext
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


def _oldest_queued_at(broker: Any) -> datetime | None:
    """When the oldest task still waiting was enqueued (from its signed package)."""
    from django_q.signing import BadSignature, SignedPackage

    payload = None
    if broker.__class__.__name__ == "ORM":
        # Waiting rows have lock <= now; a row whose lock is in the future is being worked on.
        row = (
            broker.get_connection()
            .filter(key=broker.list_key, lock__lte=timezone.now())
            .order_by("id")
            .values_list("payload", flat=True)
            .first()
        )
        payload = row
    elif hasattr(broker, "connection") and hasattr(broker.connection, "lindex"):
        # The Redis broker pushes on the right and pops from the left: index 0 is the oldest.
        payload = broker.connection.lindex(broker.list_key, 0)
    if not payload:
        return None
    try:
        task = SignedPackage.loads(payload)
    except (BadSignature, Exception):  # a foreign or corrupt package says nothing about age
        return None
    return task.get("started") if isinstance(task, dict) else None


def _same_database(environ: dict[str, str]) -> bool:
    """Whether a process with this environment serves the database this process uses."""
    from django.conf import settings

    ours = settings.DATABASES["default"]
    url = environ.get("DATABASE_URL")
    if not url:
        if "sqlite" not in ours["ENGINE"]:
            return False
        data_dir = Path(environ.get("DATA_DIR") or Path(settings.BASE_DIR) / "data").resolve()
        return Path(ours["NAME"]).resolve() == data_dir / "opsconsole.sqlite3"

    try:
        theirs = parse_database_url(url)
    except Exception:
        return False
    if "sqlite" in ours["ENGINE"]:
        return (
            "sqlite" in theirs["ENGINE"]
            and Path(theirs["NAME"]).resolve() == Path(ours["NAME"]).resolve()
        )
    return (theirs["NAME"], theirs.get("HOST") or "", str(theirs.get("PORT") or "")) == (
        ours["NAME"],
        ours.get("HOST") or "",
        str(ours.get("PORT") or ""),
    )


def _local_clusters() -> int:
    """qcluster processes on this machine serving our database.

    With a local-memory cache the clusters' own stats are invisible to other processes, so the
    embedded setup (one machine) counts processes instead.
    """
    import psutil

    count = 0
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.pid == me or "qcluster" not in cmdline:
            continue
        try:
            # Only the cluster's main process: its workers are its children with the same cmdline.
            parent = proc.parent()
            if parent is not None and "qcluster" in (parent.cmdline() or []):
                continue
            if _same_database(proc.environ()):
                count += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return count


def clusters_alive(broker: Any) -> tuple[int, str]:
    """(number of django-q2 clusters alive, how that was found out)."""
    from django.conf import settings
    from django.core.cache import caches
    from django.core.cache.backends.locmem import LocMemCache
    from django_q.conf import Conf
    from django_q.status import Stat

    cache = caches[Conf.CACHE] if Conf.CACHE in settings.CACHES else None
    if cache is not None and not isinstance(cache, LocMemCache):
        # Each cluster refreshes its stat every few seconds with a 3 s expiry.
        return len(Stat.get_all(broker)), "cluster stats in the shared cache"
    return _local_clusters(), "qcluster processes on this machine"


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
        from django_q.brokers import get_broker
        from django_q.models import Task

        config = {**QUEUE_DEFAULTS, **check.config}
        now = timezone.now()
        broker = get_broker(config.get("queue"))
        try:
            queued = int(broker.queue_size() or 0)
            in_flight = int(broker.lock_size() or 0)
            oldest_at = _oldest_queued_at(broker)
            alive, alive_source = clusters_alive(broker)
        except Exception as exc:  # the broker (Redis) being down is the finding
            return Observation(error=f"queue broker unreachable: {type(exc).__name__}: {exc}")

        finished = Task.objects.filter(stopped__gte=now - timedelta(hours=1))
        done = finished.count()
        failures = finished.filter(success=False).count()
        error_rate = round(failures * 100 / done, 1) if done else 0.0
        oldest_age = max(0.0, (now - oldest_at).total_seconds()) if oldest_at else None

        problems: list[tuple[str, str]] = []

        def judge(value: float, warn: float | None, crit: float | None, text: str) -> None:
            if crit is not None and value > crit:
                problems.append(("critical", text))
            elif warn is not None and value > warn:
                problems.append(("warning", text))

        # A stalled queue explains every other symptom, so it is named first.
        if alive < config["min_clusters"]:
            problems.append(
                (
                    "critical",
                    f"no cluster alive ({alive} of {config['min_clusters']} expected): "
                    "the queue is stalled; start `manage.py qcluster`",
                )
            )
        warn, crit, _ = check.thresholds()
        judge(queued, warn, crit, f"{queued} tasks queued")
        judge(
            failures,
            config["failures_warn"],
            config["failures_crit"],
            f"{failures} failed in the last hour",
        )
        if done >= config["rate_min_tasks"]:
            judge(
                error_rate,
                config["error_rate_warn"],
                config["error_rate_crit"],
                f"error rate {error_rate:g} % of {done} tasks",
            )
        if oldest_age is not None:
            judge(
                oldest_age,
                config["oldest_warn"],
                config["oldest_crit"],
                f"oldest queued task waiting {format_duration(oldest_age)}",
            )

        status = worst(*(level for level, _ in problems)) if problems else "ok"
        summary = (
            f"{queued} queued, {in_flight} in flight, "
            f"{failures} failed / {done} done in the last hour, "
            f"{alive} cluster{'s' if alive != 1 else ''} alive"
        )
        message = "; ".join(text for _, text in sorted(problems, key=lambda p: p[0] != "critical"))
        return Observation(
            value=queued,
            status=status,
            message=f"{message} ({summary})" if message else summary,
            details={
                "queued": queued,
                "in_flight": in_flight,
                "failures_last_hour": failures,
                "done_last_hour": done,
                "error_rate_pct": error_rate,
                "oldest_queued_seconds": round(oldest_age, 1) if oldest_age is not None else None,
                "clusters_alive": alive,
                "clusters_source": alive_source,
                "broker": broker.info(),
            },
        )
