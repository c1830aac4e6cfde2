"""The alert lifecycle driven by check results: the after-record hook.

Runs inside the recording transaction (the check row is locked), so two runs of one check
never race here. It only writes rows: alerts, events and recovery notices to send; the
``escalate`` pass does all network traffic.
"""

from __future__ import annotations

import math
from datetime import datetime

from django.db.models import Exists, F
from django.db.models.signals import post_save, pre_delete
from django.utils import timezone

from monitoring.models import (
    ACTIVE_STATUSES,
    SEVERITY_ORDER,
    Alert,
    AlertEvent,
    AlertEventKind,
    AlertSeverity,
    AlertStatus,
    Check,
    CheckRun,
    CheckStatus,
    Notification,
    NotificationStatus,
    StepKind,
)
from monitoring.models.checks import needs_alert_logic
from opsconsole.bulk import insert_rows

FLAP_WINDOW = 21
# "status changed in >= 30 % of the last 21 runs": 6.3 changes, so 7.
FLAP_MIN_CHANGES = math.ceil(0.3 * FLAP_WINDOW)

_SEVERITY_OF = {
    CheckStatus.WARNING: AlertSeverity.WARNING,
    CheckStatus.CRITICAL: AlertSeverity.CRITICAL,
}
FAILING = (CheckStatus.WARNING, CheckStatus.CRITICAL)


def check_key(check: Check) -> str:
    return f"check:{check.pk}"


def flapping_key(check: Check) -> str:
    return f"flapping:{check.pk}"


def active_alert(dedup_key: str) -> Alert | None:
    return Alert.objects.filter(dedup_key=dedup_key, status__in=ACTIVE_STATUSES).first()


def raise_alert(
    dedup_key: str,
    severity: str,
    title: str,
    *,
    message: str = "",
    check: Check | None = None,
    component: str = "",
    now: datetime | None = None,
    flapping: bool = False,
) -> Alert:
    """Opens the alert of a problem, or counts one more occurrence of the active one.

    A severity rise restarts escalation at the new severity's steps ("CRITICAL at once").
    """
    now = now or timezone.now()
    alert = active_alert(dedup_key)
    if alert is not None:
        fields = {
            "occurrences": F("occurrences") + 1,
            "last_seen_at": now,
            "message": message[:5000],
        }
        if severity != alert.severity:
            rising = SEVERITY_ORDER[severity] > SEVERITY_ORDER[alert.severity]
            # The title names the severity ("task-queue is critical"): it follows it.
            fields["severity"] = severity
            fields["title"] = title[:300]
            note = ""
            if rising:
                fields["escalation_started_at"] = now
                note = ": escalation restarts"
                if alert.status == AlertStatus.ACKNOWLEDGED:
                    # Whoever acknowledged a warning did not agree to sit on a critical.
                    fields.update(status=AlertStatus.OPEN, acknowledged_at=None, acknowledged_by="")
                    note = ": severity rose; acknowledgement cleared, escalation restarts"
            AlertEvent.objects.create(
                alert=alert,
                kind=AlertEventKind.SEVERITY_CHANGED,
                actor="system",
                created_at=now,
                message=f"Severity {alert.severity} → {severity}{note}",
                data={"from": alert.severity, "to": severity},
            )
        Alert.objects.filter(pk=alert.pk).update(**fields)
        alert.refresh_from_db()
        return alert
    previous = (
        Alert.objects.filter(dedup_key=dedup_key, status=AlertStatus.RESOLVED)
        .order_by("-resolved_at")
        .values_list("pk", flat=True)
        .first()
    )
    alert = Alert.objects.create(
        dedup_key=dedup_key,
        check_obj=check,
        component=component or (check.component if check else ""),
        title=title[:300],
        message=message[:5000],
        severity=severity,
        opened_at=now,
        last_seen_at=now,
        escalation_started_at=now,
        flapping=flapping,
    )
    if previous:
        AlertEvent.objects.create(
            alert=alert,
            kind=AlertEventKind.REOPENED,
            actor="system",
            created_at=now,
            message=f"The problem returned after alert #{previous} was resolved",
            data={"previous_alert": previous},
        )
    AlertEvent.objects.create(
        alert=alert,
        kind=AlertEventKind.OPENED,
        actor="system",
        created_at=now,
        message=message[:2000] or title,
        data={"severity": severity},
    )
    return alert


def resolve_alert(
    alert: Alert, message: str, now: datetime | None = None, *, notify: bool = True
) -> None:
    """Resolves automatically and owes a recovery notice to every channel that was told."""
    now = now or timezone.now()
    if not alert.resolve("system", message) or not notify:
        return
    told = set(
        alert.notifications.filter(status=NotificationStatus.SENT).values_list(
            "channel_id", flat=True
        )
    )
    insert_rows(
        Notification,
        [
            {
                "alert_id": alert.pk,
                "channel_id": channel_id,
                "step_kind": StepKind.RECOVERY,
                "purpose": Notification.Purpose.RECOVERY,
                "next_attempt_at": now,
                "created_at": now,
            }
            for channel_id in sorted(told)
        ],
        ignore_conflicts=True,
    )


def resolve_alerts_of_checks(check_ids: list[int], reason: str, now: datetime | None = None) -> int:
    """Resolves the active alerts of checks that stopped running (deleted, pruned, disabled,
    paused), with ``reason`` on the timeline and a resolution notice to whoever was told.

    Nobody is watching the problem any more, so nobody should keep being paged about it.
    """
    now = now or timezone.now()
    alerts = Alert.objects.filter(check_obj_id__in=check_ids, status__in=ACTIVE_STATUSES)
    resolved = 0
    for alert in alerts:
        resolve_alert(alert, reason, now)
        resolved += 1
    return resolved


def _check_deleted(sender: type[Check], instance: Check, **kwargs: object) -> None:
    """pre_delete: every delete path (admin, ``loadchecks --prune``, a queryset) sends it."""
    resolve_alerts_of_checks([instance.pk], "Check removed: its alerts are resolved")


def _check_saved(sender: type[Check], instance: Check, **kwargs: object) -> None:
    """post_save: a check saved disabled or paused (admin form, check file) stops paging."""
    if not instance.enabled or instance.status == CheckStatus.PAUSED:
        reason = getattr(instance, "stop_reason", "") or "Check disabled"
        resolve_alerts_of_checks([instance.pk], f"{reason}: its alerts are resolved")


# The timeline events written when an alert becomes active or stops being active: every path
# (this engine, a person on the alert page, the API, a signed link, the admin) writes one.
_OPENING_OR_CLOSING = (AlertEventKind.OPENED, AlertEventKind.RESOLVED)


def sync_open_alert_flag(check_id: int) -> None:
    """Sets ``Check.has_open_alert`` to whether the check has an active alert now (one UPDATE)."""
    active = Alert.objects.filter(check_obj_id=check_id, status__in=ACTIVE_STATUSES)
    Check.objects.filter(pk=check_id).update(has_open_alert=Exists(active))


def _alert_event_saved(
    sender: type[AlertEvent], instance: AlertEvent, created: bool, **kwargs: object
) -> None:
    """post_save of a timeline event: an alert of a check opened or resolved, whoever did it,
    so the check's ``has_open_alert`` follows (acknowledging keeps an alert active)."""
    if not created or instance.kind not in _OPENING_OR_CLOSING:
        return
    check_id = instance.alert.check_obj_id  # the event is made with its alert object
    if check_id is not None:
        sync_open_alert_flag(check_id)


def connect_check_signals() -> None:
    """Called from ``MonitoringConfig.ready``."""
    pre_delete.connect(_check_deleted, sender=Check, dispatch_uid="alerts-check-deleted")
    post_save.connect(_check_saved, sender=Check, dispatch_uid="alerts-check-saved")
    post_save.connect(_alert_event_saved, sender=AlertEvent, dispatch_uid="alerts-event-open-flag")


def is_flapping(check: Check) -> bool:
    changes = list(
        CheckRun.objects.filter(check_obj=check)
        .order_by("-created_at", "-id")
        .values_list("status_changed", flat=True)[:FLAP_WINDOW]
    )
    return sum(changes) >= FLAP_MIN_CHANGES


def after_record(check: Check, run: CheckRun, previous_status: str) -> None:
    """hook(check, run, previous_status), called by ``record_runs`` inside its transaction.

    Looks at alerts only when something can change: the check is failing (its alert opens,
    counts or waits on a dependency) or it has an active alert (to resolve, or a flapping
    alert to settle). A healthy check staying healthy without an alert costs no query, which
    keeps OK runs and pings cheap.
    """
    now = run.created_at
    status = check.status
    if status == CheckStatus.PAUSED:
        return
    if not needs_alert_logic(status, check.has_open_alert):
        return
    if not run.status_changed and status not in FAILING:
        # Healthy with the flag set: only a flapping alert can be settled by this run. The
        # flag is a hint kept by the timeline; if no alert is active any more, it is cleared.
        if not Alert.objects.filter(check_obj_id=check.pk, status__in=ACTIVE_STATUSES).exists():
            Check.objects.filter(pk=check.pk).update(has_open_alert=False)
            check.has_open_alert = False
            return

    flapping = is_flapping(check)
    flap_alert = active_alert(flapping_key(check))
    if flapping:
        if flap_alert is None:
            folded = active_alert(check_key(check))
            flap_alert = raise_alert(
                flapping_key(check),
                AlertSeverity.WARNING,
                f"{check.name} is flapping",
                message=f"The status changed in at least {FLAP_MIN_CHANGES} of the last "
                f"{FLAP_WINDOW} runs; latest: {status} {check.last_message}",
                check=check,
                now=now,
                flapping=True,
            )
            if folded is not None:
                # Not a recovery: the problem continues under the flapping alert, no notice.
                resolve_alert(
                    folded, f"Folded into flapping alert #{flap_alert.pk}", now, notify=False
                )
        elif run.status_changed:
            Alert.objects.filter(pk=flap_alert.pk).update(
                occurrences=F("occurrences") + 1, last_seen_at=now
            )
        # One flapping alert instead of a storm: the per-status alert waits until it settles.
        return
    if flap_alert is not None:
        resolve_alert(flap_alert, "Stopped flapping", now)

    key = check_key(check)
    if status in FAILING:
        dependency = check.depends_on
        if dependency is not None and dependency.status in FAILING:
            # The dependency's own alert tells the story; this one would be noise.
            return
        severity = _SEVERITY_OF[CheckStatus(status)]
        raise_alert(
            key,
            severity,
            f"{check.name} is {status}",
            message=check.last_message,
            check=check,
            now=now,
        )
    elif status == CheckStatus.OK:
        alert = active_alert(key)
        if alert is not None:
            resolve_alert(alert, f"Recovered: {check.last_message}".strip(), now)
