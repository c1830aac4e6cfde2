"""One home per reading: overall state, queue health, scheduler liveness, Redis, database.

The dashboard, the health report, ``metrics health``, /api/status, /metrics and the ``queue``
check kind all take their figures from here, so two screens never disagree about one reading.

Each reading is taken fresh (never cached here) and never raises: an unreachable dependency
is a value to report, not an error to propagate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.db import connection
from django.db.models import Count, Max, Min, Q
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import Task
from django_q.signing import SignedPackage
from django_q.status import Stat
from redis.exceptions import RedisError

from monitoring.kinds import get_kind, kind_names
from monitoring.models import SEVERITY_RANK, Alert, AlertSeverity, AlertStatus, Check, CheckStatus
from monitoring.observability.processes import scan_processes
from opsconsole.env import parse_database_url
from opsconsole.redis_guard import redis_client


@dataclass
class RedisReading:
    configured: bool
    up: bool = False
    used_memory: int = 0
    maxmemory: int = 0
    latency_ms: float | None = None
    error: str = ""
    info: dict[str, Any] = field(default_factory=dict)


def read_redis(timeout: float | None = None) -> RedisReading:
    """PING and INFO within ``REDIS_TIMEOUT``; during a known outage the breaker answers at
    once with the last error, so a status page never waits twice for a hanging Redis."""
    if not settings.REDIS_URL:
        return RedisReading(configured=False)
    client = redis_client(timeout=timeout)
    try:
        started = time.monotonic()
        client.ping()
        latency = (time.monotonic() - started) * 1000
        info = client.info()
        return RedisReading(
            configured=True,
            up=True,
            used_memory=int(info.get("used_memory", 0)),
            maxmemory=int(info.get("maxmemory", 0)),
            latency_ms=round(latency, 2),
            info=info,
        )
    except (RedisError, OSError) as exc:
        return RedisReading(configured=True, up=False, error=str(exc) or type(exc).__name__)
    finally:
        client.close()


@dataclass
class QueueReading:
    """Health of the django-q2 task queue, every figure taken once.

    ``queued`` counts tasks waiting for a worker; ``in_flight`` those a worker holds (the ORM
    broker only: the Redis broker pops a task when a worker takes it). Broker figures are
    ``None`` when the broker cannot be reached; the last hour's outcomes come from the
    database and are always there.
    """

    broker: str
    reachable: bool
    queued: int | None
    in_flight: int | None
    succeeded_last_hour: int
    failed_last_hour: int
    oldest_queued_seconds: float | None = None
    clusters_alive: int | None = None
    clusters_source: str = ""
    broker_info: str = ""
    error: str = ""

    @property
    def finished_last_hour(self) -> int:
        return self.succeeded_last_hour + self.failed_last_hour

    @property
    def error_rate_pct(self) -> float | None:
        """Failed share of the last hour's finished tasks; ``None`` when none finished."""
        total = self.finished_last_hour
        return round(self.failed_last_hour * 100 / total, 1) if total else None


def read_queue(now: datetime | None = None, queue: str | None = None) -> QueueReading:
    """django-q2: the broker's backlog, the last hour's outcomes and the clusters alive.

    ``queue`` names another cluster's queue (a check's ``queue`` config); by default the one
    this console's own cluster serves.
    """
    now = now or timezone.now()
    outcomes = Task.objects.filter(stopped__gte=now - timedelta(hours=1)).aggregate(
        done=Count("id"), failed=Count("id", filter=Q(success=False))
    )
    failed = outcomes["failed"]
    succeeded = outcomes["done"] - failed
    broker_name = "redis" if settings.Q_CLUSTER.get("redis") else "orm"
    try:
        broker = get_broker(queue)
        broker_name = "orm" if isinstance(broker, ORM) else "redis"
        queued = int(broker.queue_size() or 0)
        in_flight = int(broker.lock_size() or 0)
        oldest_at = _oldest_queued_at(broker, now)
        alive, alive_source = clusters_alive(broker)
        info = broker.info()
    except Exception as exc:  # noqa: BLE001 - any broker failure means "unreachable"
        return QueueReading(
            broker_name,
            False,
            None,
            None,
            succeeded,
            failed,
            error=f"{type(exc).__name__}: {exc}",
        )
    oldest = round(max(0.0, (now - oldest_at).total_seconds()), 1) if oldest_at else None
    return QueueReading(
        broker_name,
        True,
        queued,
        in_flight,
        succeeded,
        failed,
        oldest_queued_seconds=oldest,
        clusters_alive=alive,
        clusters_source=alive_source,
        broker_info=info,
    )


def _oldest_queued_at(broker: Any, now: datetime) -> datetime | None:
    """When the oldest task still waiting was enqueued (from its signed package)."""
    payload = None
    if isinstance(broker, ORM):
        # Waiting rows have lock <= now; a row whose lock is in the future is being worked on.
        payload = (
            broker.get_connection()
            .filter(key=broker.list_key, lock__lte=now)
            .order_by("id")
            .values_list("payload", flat=True)
            .first()
        )
    elif hasattr(broker, "connection") and hasattr(broker.connection, "lindex"):
        # The Redis broker pushes on the right and pops from the left: index 0 is the oldest.
        payload = broker.connection.lindex(broker.list_key, 0)
    if not payload:
        return None
    try:
        task = SignedPackage.loads(payload)
    except Exception:  # noqa: BLE001 - a foreign or corrupt package says nothing about age
        return None
    return task.get("started") if isinstance(task, dict) else None


def clusters_alive(broker: Any) -> tuple[int, str]:
    """(number of django-q2 clusters alive, how that was found out)."""
    cache = caches[Conf.CACHE] if Conf.CACHE in settings.CACHES else None
    if cache is not None and not isinstance(cache, LocMemCache):
        # Each cluster refreshes its stat every few seconds with a 3 s expiry.
        return len(Stat.get_all(broker)), "cluster stats in the shared cache"
    return _local_clusters(), "qcluster processes on this machine"


def _local_clusters() -> int:
    """qcluster processes on this machine serving our database.

    With a local-memory cache the clusters' own stats are invisible to other processes, so the
    embedded setup (one machine) counts processes instead.
    """
    count = 0
    # A private scan: psutil's shared process cache is not safe beside a process check's scan.
    for proc, info in scan_processes(["cmdline"]):
        if "qcluster" not in (info.get("cmdline") or []):
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


def _same_database(environ: dict[str, str]) -> bool:
    """Whether a process with this environment serves the database this process uses."""
    ours = settings.DATABASES["default"]
    url = environ.get("DATABASE_URL")
    if not url:
        if "sqlite" not in ours["ENGINE"]:
            return False
        data_dir = Path(environ.get("DATA_DIR") or Path(settings.BASE_DIR) / "data").resolve()
        return Path(ours["NAME"]).resolve() == data_dir / "opsconsole.sqlite3"

    try:
        theirs = parse_database_url(url)
    except Exception:  # noqa: BLE001 - a process we cannot place serves some other database
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


@dataclass
class DatabaseReading:
    up: bool
    vendor: str
    latency_ms: float | None = None
    error: str = ""


def read_database() -> DatabaseReading:
    try:
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return DatabaseReading(
            True, connection.vendor, round((time.monotonic() - started) * 1000, 2)
        )
    except Exception as exc:  # noqa: BLE001
        return DatabaseReading(
            False, connection.vendor, error=str(exc).strip() or type(exc).__name__
        )


# A scheduled pass missed for this many intervals of the shortest check is a stall.
STALLED_AFTER_INTERVALS = 2


@dataclass
class SchedulerReading:
    """How long ago the runner last ran a scheduled check, against the shortest interval."""

    enabled_checks: int
    last_run_at: datetime | None
    age_seconds: float | None
    interval_seconds: int | None
    stalled: bool

    @property
    def limit_seconds(self) -> float | None:
        if self.interval_seconds is None:
            return None
        return STALLED_AFTER_INTERVALS * self.interval_seconds


def pushed_kinds() -> list[str]:
    return [name for name in kind_names() if get_kind(name).pushed]


def read_scheduler(now: datetime | None = None) -> SchedulerReading:
    now = now or timezone.now()
    # Only checks the runner probes count: a heartbeat's run is written by the job's ping
    # too, so cron jobs that keep pinging would hide a scheduler that stopped.
    agg = (
        Check.objects.filter(enabled=True)
        .exclude(kind__in=pushed_kinds())
        .aggregate(
            n=Count("id"),
            last=Max("last_run_at"),
            interval=Min("interval_seconds"),
            first=Min("created_at"),
        )
    )
    if not agg["n"]:
        return SchedulerReading(0, None, None, None, False)
    # A fresh installation gets the same time from its first check's creation before it
    # counts as stalled.
    reference = agg["last"] or agg["first"]
    age = max(0.0, (now - reference).total_seconds())
    interval = int(agg["interval"])
    stalled = age >= STALLED_AFTER_INTERVALS * interval
    return SchedulerReading(agg["n"], agg["last"], round(age, 1), interval, stalled)


# --- overall state ----------------------------------------------------------------------


@dataclass
class OverallState:
    status: str
    summary: str
    checks_by_status: dict[str, int] = field(default_factory=dict)
    open_alerts: int = 0


def overall_state() -> OverallState:
    """Worst of the enabled checks and the open alerts, in two aggregate queries."""
    counts = {
        row["status"]: row["n"]
        for row in Check.objects.filter(enabled=True).values("status").annotate(n=Count("id"))
    }
    status = CheckStatus.OK
    for name, n in counts.items():
        if n and SEVERITY_RANK.get(CheckStatus(name), 0) > SEVERITY_RANK[CheckStatus(status)]:
            status = name
    open_alerts = 0
    rows = Alert.objects.filter(status=AlertStatus.OPEN).values("severity").annotate(n=Count("id"))
    for row in rows:
        open_alerts += row["n"]
        severity = str(row["severity"]).lower()
        if severity in (AlertSeverity.WARNING, AlertSeverity.CRITICAL) and (
            SEVERITY_RANK[CheckStatus(severity)] > SEVERITY_RANK[CheckStatus(status)]
        ):
            status = severity
    failing = counts.get(CheckStatus.CRITICAL, 0) + counts.get(CheckStatus.WARNING, 0)
    if not counts:
        summary = "No checks configured"
        status = CheckStatus.UNKNOWN if not open_alerts else status
    elif status == CheckStatus.OK:
        summary = f"All {sum(counts.values())} checks OK"
    else:
        parts = []
        if counts.get(CheckStatus.CRITICAL):
            parts.append(f"{counts[CheckStatus.CRITICAL]} critical")
        if counts.get(CheckStatus.WARNING):
            parts.append(f"{counts[CheckStatus.WARNING]} warning")
        if counts.get(CheckStatus.UNKNOWN):
            parts.append(f"{counts[CheckStatus.UNKNOWN]} unknown")
        summary = ", ".join(parts) if failing or parts else "Attention needed"
    if open_alerts:
        summary += f" · {open_alerts} open alert{'s' if open_alerts != 1 else ''}"
    return OverallState(str(status), summary, counts, open_alerts)
