"""The 30-minute health report (seed 004 layout): built from live readings, saved as a
``Report``, printed by ``opsreport`` and optionally mailed to staff."""

from __future__ import annotations

import logging
import os
from datetime import datetime
from typing import Any

import psutil
from django.utils import timezone

from monitoring.models import (
    ACTIVE_STATUSES,
    SEVERITY_RANK,
    Alert,
    Check,
    CheckStatus,
    Report,
    worst,
)
from monitoring.observability.readings import (
    overall_state,
    read_database,
    read_queue,
    read_redis,
)
from opsconsole.logging import job_context

logger = logging.getLogger(__name__)

WIDTH = 80
HEAVY = "═" * WIDTH
LIGHT = "─" * WIDTH
ICON = {
    CheckStatus.OK: "✅",
    CheckStatus.WARNING: "⚠️ ",
    CheckStatus.CRITICAL: "❌",
    CheckStatus.UNKNOWN: "❔",
    CheckStatus.PAUSED: "⏸ ",
}
DATA_KINDS = ("freshness", "sql_value")


def _mb(value: float) -> str:
    return f"{value / 1024 / 1024:.0f}MB"


def _gb(value: float) -> str:
    return f"{value / 1024**3:.1f}G"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "never"


def collect(now: datetime) -> dict[str, Any]:
    processes = []
    for check in Check.objects.filter(enabled=True, kind="process").order_by("name"):
        processes.append(
            {
                "name": check.name,
                "status": check.status,
                "message": check.last_message,
                "value": check.last_value,
                "last_run_at": check.last_run_at.isoformat() if check.last_run_at else None,
            }
        )
    queue = read_queue(now)
    db = read_database()
    db_checks = [
        {"name": c.name, "status": c.status, "message": c.last_message}
        for c in Check.objects.filter(enabled=True, kind="database").order_by("name")
    ]
    data_checks = [
        {
            "name": c.name,
            "kind": c.kind,
            "status": c.status,
            "value": c.last_value,
            "message": c.last_message,
            "last_run_at": c.last_run_at.isoformat() if c.last_run_at else None,
        }
        for c in Check.objects.filter(enabled=True, kind__in=DATA_KINDS).order_by("name")
    ]
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage("/")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    redis = read_redis()
    overall = overall_state()
    return {
        "timestamp": now.isoformat(),
        "processes": processes,
        "queue": {
            "broker": queue.broker,
            "reachable": queue.reachable,
            "queued": queue.queued,
            "in_flight": queue.in_flight,
            "succeeded_last_hour": queue.succeeded_last_hour,
            "failed_last_hour": queue.failed_last_hour,
            "error_rate_pct": queue.error_rate_pct,
            "oldest_queued_seconds": queue.oldest_queued_seconds,
            "clusters_alive": queue.clusters_alive,
            "clusters_source": queue.clusters_source,
            "error": queue.error,
        },
        "database": {
            "up": db.up,
            "vendor": db.vendor,
            "latency_ms": db.latency_ms,
            "error": db.error,
            "checks": db_checks,
        },
        "redis": {
            "configured": redis.configured,
            "up": redis.up,
            "used_memory": redis.used_memory,
            "error": redis.error,
        },
        "data": data_checks,
        "alerts": _active_alerts(),
        "checks": overall.checks_by_status,
        "overall": {"status": overall.status, "summary": overall.summary},
        "resources": {
            "memory_used": memory.total - memory.available,
            "memory_free": memory.available,
            "memory_pct": memory.percent,
            "load": list(load),
            "cpu_count": psutil.cpu_count() or 1,
            "disk_pct": disk.percent,
            "disk_free": disk.free,
        },
    }


def _active_alerts() -> list[dict[str, Any]]:
    rows = []
    for alert in Alert.objects.filter(status__in=ACTIVE_STATUSES).order_by("-opened_at")[:20]:
        rows.append(
            {
                "id": alert.pk,
                "severity": str(alert.severity),
                "status": str(alert.status),
                "title": alert.title,
                "opened_at": alert.opened_at.isoformat() if alert.opened_at else None,
            }
        )
    return rows


def overall_status(data: dict[str, Any]) -> str:
    """The overall state (worst of the checks and the open alerts), critical as well when
    the console's own database or Redis is down."""
    statuses = [data["overall"]["status"]]
    if not data["database"]["up"]:
        statuses.append(CheckStatus.CRITICAL)
    if data["redis"]["configured"] and not data["redis"]["up"]:
        statuses.append(CheckStatus.CRITICAL)
    return worst(*statuses)


def render(data: dict[str, Any]) -> str:
    lines = [HEAVY, "OPS CONSOLE HEALTH REPORT", f"Timestamp: {data['timestamp']}", HEAVY, ""]

    lines += ["📊 PROCESS STATUS", LIGHT]
    queue = data["queue"]
    clusters = queue["clusters_alive"]
    queue_ok = queue["reachable"] and (clusters is None or clusters > 0)
    lines.append(
        f"{ICON[CheckStatus.OK if queue_ok else CheckStatus.CRITICAL]} task queue ({queue['broker']} broker)"
    )
    lines.append(
        f"   Workers alive: {'unknown' if clusters is None else clusters} | "
        f"Queued: {'unknown' if queue['queued'] is None else queue['queued']} | "
        f"Last hour: {queue['succeeded_last_hour']} ok, {queue['failed_last_hour']} failed"
    )
    if not data["processes"]:
        lines.append("   (no process checks configured)")
    for proc in data["processes"]:
        lines.append(f"{ICON.get(proc['status'], '❔')} {proc['name']}")
        lines.append(f"   Status: {proc['status']} | {proc['message'] or 'no message'}")
    lines.append("")

    lines += ["🗄️  DATABASE HEALTH", LIGHT]
    db = data["database"]
    if db["up"]:
        lines.append(f"✅ Connected ({db['vendor']}, SELECT 1 in {db['latency_ms']} ms)")
    else:
        lines.append(f"❌ Unreachable: {db['error']}")
    for check in db["checks"]:
        lines.append(f"{ICON.get(check['status'], '❔')} {check['name']}: {check['message']}")
    redis = data["redis"]
    if redis["configured"]:
        lines.append(
            f"✅ Redis connected, {_mb(redis['used_memory'])} used"
            if redis["up"]
            else f"❌ Redis unreachable: {redis['error']}"
        )
    lines.append("")

    lines += ["📈 RECENT DATA", LIGHT]
    if data["data"]:
        width = max(24, *(len(c["name"]) for c in data["data"]))
        lines.append(f"{'Check':<{width}} {'Kind':<10} {'Value':>12}  {'Last run':<19} Status")
        lines.append(LIGHT)
        for c in data["data"]:
            value = "" if c["value"] is None else f"{c['value']:g}"
            last = _when(datetime.fromisoformat(c["last_run_at"])) if c["last_run_at"] else "never"
            lines.append(
                f"{c['name']:<{width}} {c['kind']:<10} {value:>12}  {last:<19} "
                f"{ICON.get(c['status'], '❔')} {c['status']}"
            )
    else:
        lines.append("(no freshness or sql_value checks configured)")
    lines.append("")

    if data["alerts"]:
        lines += [f"🚨 ACTIVE ALERTS ({len(data['alerts'])})", LIGHT]
        for alert in data["alerts"]:
            icon = ICON.get(alert["severity"], "ℹ️ ")
            lines.append(
                f"{icon} [{alert['severity'].upper()}] {alert['title']} "
                f"({alert['status']}, since {alert['opened_at']})"
            )
    else:
        failing = {
            s: n for s, n in data["checks"].items() if SEVERITY_RANK.get(CheckStatus(s), 0) >= 2
        }
        if failing:
            lines.append(
                "⚠️  Failing checks: " + ", ".join(f"{n} {s}" for s, n in sorted(failing.items()))
            )
        else:
            lines.append("✅ No alerts")
    lines.append("")

    res = data["resources"]
    load = ", ".join(f"{v:.2f}" for v in res["load"])
    lines += ["💾 SYSTEM RESOURCES", LIGHT]
    lines.append(
        f"Memory: {_gb(res['memory_used'])} used | {_gb(res['memory_free'])} free "
        f"({res['memory_pct']:.0f} %)"
    )
    lines.append(f"CPU Load (1/5/15 min): {load} ({res['cpu_count']} CPUs)")
    lines.append(f"Disk /: {res['disk_pct']:.0f} % used | {_gb(res['disk_free'])} free")
    lines.append(HEAVY)
    return "\n".join(lines) + "\n"


def build_report(now: datetime | None = None) -> Report:
    now = now or timezone.now()
    data = collect(now)
    status = overall_status(data)
    return Report.objects.create(
        created_at=now,
        title=f"Health report {now:%Y-%m-%d %H:%M} UTC: {status}",
        overall_status=status,
        text=render(data),
        data=data,
    )


def email_report(report: Report) -> int:
    """Mails the report to active staff with an address; returns how many were sent."""
    from django.contrib.auth import get_user_model
    from django.core.mail import send_mail

    recipients = list(
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    if not recipients:
        return 0
    send_mail(f"[opsconsole] {report.title}", report.text, None, recipients)
    return len(recipients)


def scheduled_report() -> int:
    """The 30-minute job: save a report (and mail it when OPSREPORT_EMAIL is on)."""
    from django.conf import settings

    with job_context(job_name="opsreport"):
        report = build_report()
        sent = email_report(report) if settings.OPSREPORT_EMAIL else 0
        logger.info(
            "health report saved: %s",
            report.title,
            extra={"report_id": report.pk, "mailed_to": sent},
        )
        return report.pk
