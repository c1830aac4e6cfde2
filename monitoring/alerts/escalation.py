"""The escalate pass: plan the steps that are due, claim them, send, record.

Plan: every step owed by now becomes a ``Notification`` row, inserted with "ignore
conflicts" against the unique (alert, channel, step kind, severity, number) constraint, so
two passes planning the same step make one row. Claim: pending rows move to ``sending``
under this pass's token in one transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL;
SQLite serialises writers), so a row is sent by exactly one pass. The number of queries
does not depend on the number of alerts: rows travel in single statements
(``bulk.insert_rows``).
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from monitoring.alerts.delivery import Outgoing, build_grouped, build_single, deliver
from monitoring.alerts.metrics import count_notifications
from monitoring.alerts.policy import (
    NOBODY,
    ChannelSet,
    due_notifications,
    load_policies,
    unheard_steps,
)
from monitoring.alerts.report import load_report_inputs
from monitoring.models import (
    Alert,
    AlertEvent,
    AlertEventKind,
    AlertStatus,
    ChannelKind,
    CheckStatus,
    MaintenanceWindow,
    Notification,
    NotificationChannel,
    NotificationStatus,
    StepKind,
)
from monitoring.observability.stalled import check_monitoring_stalled
from opsconsole.bulk import insert_rows
from opsconsole.logging import job_context
from opsconsole.retry import backoff_seconds

logger = logging.getLogger(__name__)

# A pass that died between claim and record leaves rows in "sending"; after this long they
# are pending again (a message may then go twice, which beats never).
STALE_CLAIM = timedelta(minutes=10)
MAX_CLAIM = 5000


@dataclass
class PassResult:
    planned: int = 0
    claimed: int = 0
    messages: int = 0
    sent: int = 0
    failed: int = 0
    retrying: int = 0
    muted_alerts: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.claimed} notifications due, {self.messages} messages: {self.sent} delivered, "
            f"{self.retrying} to retry, {self.failed} failed for good; "
            f"{self.muted_alerts} alerts muted (maintenance)"
        )


def _mute_filter(windows: list[MaintenanceWindow]) -> Q | None:
    """Rows of alerts under an active maintenance window; None when there is none."""
    if not windows:
        return None
    q = Q(pk__in=[])
    for window in windows:
        if window.check_obj_id:
            q |= Q(alert__check_obj_id=window.check_obj_id)
        elif window.component:
            q |= Q(alert__component=window.component)
        else:
            return Q()  # a window over everything
    return q


def check_running(prefix: str = "") -> Q:
    """Alerts whose check still runs: not deleted, disabled or paused. Alerts of no check
    (e.g. "monitoring stalled") qualify; a check's alert whose check is gone does not.

    The guard of escalation: ``plan`` and ``claim`` both filter on it, so no step or reminder
    goes out for a check nobody runs, whichever path stopped it.
    """
    gone = Q(**{f"{prefix}check_obj__isnull": True}) & (
        Q(**{f"{prefix}dedup_key__startswith": "check:"})
        | Q(**{f"{prefix}dedup_key__startswith": "flapping:"})
    )
    stopped = Q(**{f"{prefix}check_obj__enabled": False}) | Q(
        **{f"{prefix}check_obj__status": CheckStatus.PAUSED}
    )
    return ~gone & ~stopped


def plan(now: datetime, channels: ChannelSet, windows: list[MaintenanceWindow]) -> tuple[int, int]:
    """Inserts the rows owed by now; (rows planned, alerts muted)."""
    policies = load_policies()
    alerts = (
        Alert.objects.filter(status=AlertStatus.OPEN)
        .filter(check_running())
        .filter(Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now))
        .only("id", "severity", "escalation_started_at", "check_obj_id", "component")
        .order_by()
    )
    rows = []
    unheard: dict[int, list[str]] = {}
    muted = 0
    for alert in alerts.iterator(chunk_size=2000):
        if any(w.covers(alert, now) for w in windows):
            muted += 1
            continue
        policy = policies[alert.severity]
        steps = unheard_steps(alert, policy, channels, now)
        if steps:
            unheard[alert.pk] = [f"{alert.severity}/{s.index}" for s in steps]
        for owed in due_notifications(alert, policy, channels, now):
            rows.append(
                {
                    "alert_id": alert.pk,
                    "channel_id": owed.channel_id,
                    "step_kind": owed.kind,
                    "step_severity": owed.severity,
                    "step_number": owed.number,
                    "purpose": Notification.Purpose.ESCALATION,
                    "status": NotificationStatus.PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "claim_token": "",
                    "last_error": "",
                    "created_at": now,
                }
            )
    insert_rows(Notification, rows, ignore_conflicts=True)
    if unheard:
        record_nobody_notified(unheard, now)
    return len(rows), muted


def record_nobody_notified(unheard: dict[int, list[str]], now: datetime) -> None:
    """One "no channel: nobody was notified" timeline event per alert and step."""
    with transaction.atomic():
        # The alerts' rows are locked so that two passes do not both write the event.
        ids = list(
            Alert.objects.select_for_update()
            .filter(pk__in=list(unheard))
            .values_list("pk", flat=True)
        )
        recorded = {
            (alert_id, (data or {}).get("step"))
            for alert_id, data in AlertEvent.objects.filter(
                alert_id__in=ids, outcome=NOBODY
            ).values_list("alert_id", "data")
        }
        insert_rows(
            AlertEvent,
            [
                {
                    "alert_id": alert_id,
                    "kind": AlertEventKind.NOTIFIED,
                    "actor": "system",
                    "message": f"no channel: nobody was notified ({step})",
                    "channel": "",
                    "outcome": NOBODY,
                    "data": {
                        "step": step,
                        "hint": "add a notification channel that accepts this severity "
                        "(admin: Notification channels), or lower a channel's minimum severity",
                    },
                    "created_at": now,
                }
                for alert_id in ids
                for step in unheard[alert_id]
                if (alert_id, step) not in recorded
            ],
        )


def claim(now: datetime, token: str, windows: list[MaintenanceWindow]) -> int:
    Notification.objects.filter(
        status=NotificationStatus.SENDING, claimed_at__lt=now - STALE_CLAIM
    ).update(status=NotificationStatus.PENDING, claim_token="")
    eligible = Notification.objects.filter(
        status=NotificationStatus.PENDING, next_attempt_at__lte=now
    ).filter(
        Q(purpose=Notification.Purpose.RECOVERY)
        | (
            Q(alert__status=AlertStatus.OPEN)
            & check_running("alert__")
            & (Q(alert__snoozed_until__isnull=True) | Q(alert__snoozed_until__lte=now))
        )
    )
    mute = _mute_filter(windows)
    if mute is not None:
        eligible = eligible.exclude(mute)
    with transaction.atomic():
        candidates = eligible.order_by("id")
        if connection.vendor == "postgresql":
            # A channel is claimed whole: two passes scanning the same rows with SKIP LOCKED
            # would otherwise interleave and split one channel's group into two messages.
            # Locking the channel rows first gives each channel to one pass. (On SQLite the
            # IMMEDIATE transaction already serialises claims.)
            channel_ids = list(eligible.order_by().values_list("channel_id", flat=True).distinct())
            locked = list(
                NotificationChannel.objects.filter(id__in=channel_ids)
                .order_by("id")
                .select_for_update(skip_locked=True)
                .values_list("id", flat=True)
            )
            candidates = candidates.filter(channel_id__in=locked).select_for_update(
                skip_locked=True, of=("self",)
            )
        ids = list(candidates.values_list("id", flat=True)[:MAX_CLAIM])
        if not ids:
            return 0
        # The status condition re-checked by the UPDATE itself is the guard.
        return Notification.objects.filter(id__in=ids, status=NotificationStatus.PENDING).update(
            status=NotificationStatus.SENDING, claim_token=token, claimed_at=now
        )


def compose(rows: list[Notification], now: datetime) -> list[Outgoing]:
    """One message per alert and channel (steps owed together, e.g. after a maintenance window,
    go as one), or one grouped message when a channel is owed more alerts than the threshold."""
    threshold = settings.ALERT_GROUP_THRESHOLD
    by_channel: dict[int, dict[int, list[Notification]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_channel[row.channel_id][row.alert_id].append(row)
    # Every alert's report inputs, grouped ones too: a grouped email carries each report.
    alerts = {
        rows[0].alert_id: rows[0].alert for per in by_channel.values() for rows in per.values()
    }
    inputs = load_report_inputs(list(alerts.values()))
    messages = []
    for per_alert in by_channel.values():
        groups = [sorted(rs, key=_significance) for rs in per_alert.values()]
        channel = groups[0][0].channel
        if len(groups) > threshold:
            messages.append(build_grouped(channel, groups, now, inputs))
        else:
            messages.extend(build_single(channel, g, inputs[g[0].alert_id], now) for g in groups)
    return messages


def _significance(row: Notification) -> tuple[int, int]:
    """The row that speaks for an alert's rows in one message: recovery, then the latest step."""
    if row.purpose == Notification.Purpose.RECOVERY:
        return (0, 0)
    # Reminders after every escalation step.
    return (1, -row.step_number if row.step_kind == StepKind.ESCALATION else 1)


def send_all(messages: list[Outgoing]) -> None:
    """Email on this thread (Django's mail backends are not made for threads); HTTP channels
    concurrently, so that one slow receiver costs its own timeout, not everyone's."""
    http = [m for m in messages if m.channel.kind != ChannelKind.EMAIL]
    with httpx.Client(headers={"User-Agent": "opsconsole-notify/1"}) as client:
        if http:
            workers = min(8, len(http))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for message, error in zip(
                    http, pool.map(lambda m: deliver(m, client), http), strict=True
                ):
                    message.error = error
        for message in messages:
            if message.channel.kind == ChannelKind.EMAIL:
                message.error = deliver(message, client)


def record(messages: list[Outgoing], token: str, now: datetime, result: PassResult) -> None:
    max_attempts = settings.ALERT_NOTIFY_MAX_ATTEMPTS
    backoff = settings.ALERT_NOTIFY_BACKOFF
    ok_ids: list[int] = []
    # (status, next attempt, error) -> ids: failures of one message share their fate.
    failed: dict[tuple[str, datetime | None, str], list[int]] = defaultdict(list)
    events = []
    escalated: set[tuple[int, str, int]] = set()
    outcomes: dict[tuple[str, str], int] = defaultdict(int)  # (channel, sent|failed) -> rows
    for message in messages:
        for row in message.rows:
            attempt = row.attempts + 1
            event = {
                "alert_id": row.alert_id,
                "kind": AlertEventKind.NOTIFIED,
                "actor": "system",
                "channel": message.channel.name,
                "created_at": now,
                "data": {"step": row.step_key, "attempt": attempt, "grouped": message.grouped},
            }
            if message.error is None:
                ok_ids.append(row.pk)
                outcomes[(message.channel.name, "sent")] += 1
                event["outcome"] = "sent"
                event["message"] = f"{row.step_key} sent to {message.channel.name}" + (
                    f" (grouped message of {message.payload['count']} alerts)"
                    if message.grouped
                    else ""
                )
                step = (row.alert_id, row.step_severity, row.step_number)
                # The first step is the first notice, not an escalation.
                if (
                    row.step_kind == StepKind.ESCALATION
                    and row.step_number
                    and step not in escalated
                ):
                    escalated.add(step)
                    events.append(
                        {
                            "alert_id": row.alert_id,
                            "kind": AlertEventKind.ESCALATED,
                            "actor": "system",
                            "channel": "",
                            "outcome": "",
                            "created_at": now,
                            "message": f"Escalated to step {row.step_number + 1} ({row.step_key})",
                            "data": {"step": row.step_key},
                        }
                    )
            else:
                final = attempt >= max_attempts
                retry_at = (
                    None if final else now + timedelta(seconds=backoff_seconds(attempt, backoff))
                )
                status = NotificationStatus.FAILED if final else NotificationStatus.PENDING
                failed[(status, retry_at, message.error)].append(row.pk)
                event["outcome"] = "failed" if final else "error"
                event["message"] = (
                    f"{row.step_key} to {message.channel.name} failed (attempt {attempt}): "
                    f"{message.error}"
                    + ("; giving up" if final else f"; retry at {retry_at:%H:%M:%S}")
                )
                if final:
                    result.failed += 1
                    outcomes[(message.channel.name, "failed")] += 1
                else:
                    result.retrying += 1
            events.append(event)
    result.sent = len(ok_ids)
    with transaction.atomic():
        if ok_ids:
            Notification.objects.filter(claim_token=token, id__in=ok_ids).update(
                status=NotificationStatus.SENT,
                attempts=F("attempts") + 1,
                finished_at=now,
                last_error="",
            )
        for (status, retry_at, error), ids in failed.items():
            fields = {
                "status": status,
                "attempts": F("attempts") + 1,
                "last_error": error,
                "claim_token": "",
            }
            if retry_at is not None:
                fields["next_attempt_at"] = retry_at
            else:
                fields["finished_at"] = now
            Notification.objects.filter(claim_token=token, id__in=ids).update(**fields)
        count_notifications(outcomes)
        for event in events:
            event.setdefault("outcome", "")
            event.setdefault("message", "")
        insert_rows(
            AlertEvent,
            [
                {
                    k: e[k]
                    for k in (
                        "alert_id",
                        "kind",
                        "actor",
                        "message",
                        "channel",
                        "outcome",
                        "data",
                        "created_at",
                    )
                }
                for e in events
            ],
        )


def escalate_pass(now: datetime | None = None) -> PassResult:
    """One escalate pass. Safe to run in several processes at once."""
    now = now or timezone.now()
    result = PassResult()
    token = secrets.token_hex(12)
    channel_set = ChannelSet(list(NotificationChannel.objects.all()))
    windows = [w for w in MaintenanceWindow.objects.filter(ends_at__gt=now) if w.starts_at <= now]
    result.planned, result.muted_alerts = plan(now, channel_set, windows)
    result.claimed = claim(now, token, windows)
    if not result.claimed:
        return result
    rows = list(
        Notification.objects.filter(
            claim_token=token, status=NotificationStatus.SENDING
        ).select_related("alert", "alert__check_obj", "channel")
    )
    messages = compose(rows, now)
    result.messages = len(messages)
    send_all(messages)
    record(messages, token, now, result)
    for message in messages:
        if message.error:
            logger.warning(
                "notification to %s failed: %s",
                message.channel.name,
                message.error,
                extra={"channel": message.channel.name, "alerts": len(message.rows)},
            )
    return result


def run_escalate() -> str:
    """django-q2 task: one pass (the schedule runs it every minute)."""
    with job_context(job_name="escalate"):
        check_monitoring_stalled()
        result = escalate_pass()
        logger.info("escalate pass: %s", result.summary())
    return result.summary()
