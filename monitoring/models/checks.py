"""Checks and their runs. A check's status only changes through ``record_runs`` (a batch of
runs; ``Check.record`` is a batch of one)."""

from __future__ import annotations

import json
import logging
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    connection,
    connections,
    models,
    transaction,
)
from django.db.models import Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from monitoring.checks.baseline import BaselineVerdict, compare, window_of
from monitoring.kinds import CheckKind, ConfigError, get_kind
from monitoring.models.alerts import ACTIVE_STATUSES, Alert
from opsconsole.bulk import insert_rows
from opsconsole.counters import count_events, histogram_events

if TYPE_CHECKING:
    from monitoring.kinds import Observation

logger = logging.getLogger(__name__)


class CheckStatus(models.TextChoices):
    OK = "ok", "OK"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"
    UNKNOWN = "unknown", "Unknown"
    PAUSED = "paused", "Paused"


# How bad a status is, for "the worst of" and for debounce (only worsening is debounced).
SEVERITY_RANK = {
    CheckStatus.OK: 0,
    CheckStatus.PAUSED: 0,
    CheckStatus.UNKNOWN: 1,
    CheckStatus.WARNING: 2,
    CheckStatus.CRITICAL: 3,
}


def worst(*statuses: str | None) -> str:
    present = [s for s in statuses if s]
    return max(present, key=lambda s: SEVERITY_RANK[CheckStatus(s)]) if present else CheckStatus.OK


def can_author_sql(user: Any) -> bool:
    """Superusers and holders of ``monitoring.author_sql_checks``: a check's query or DSN runs
    with the console's own database access, so writing one is not open to every editor."""
    return bool(user is not None and user.has_perm("monitoring.author_sql_checks"))


class Direction(models.TextChoices):
    ABOVE = "above", "Value above threshold is bad"
    BELOW = "below", "Value below threshold is bad"


def default_interval_seconds() -> int:
    """CHECKS_DEFAULT_INTERVAL, read when a check is made without an interval (never frozen
    at import: a changed setting applies to the next check made)."""
    return int(settings.CHECKS_DEFAULT_INTERVAL)


def default_timeout_seconds() -> float:
    """CHECKS_DEFAULT_TIMEOUT, read when a check is made without a timeout."""
    return float(settings.CHECKS_DEFAULT_TIMEOUT)


class Check(models.Model):
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=30)
    component = models.CharField(max_length=100, blank=True, default="")
    description = models.TextField(blank=True, default="")
    config = models.JSONField(default=dict, blank=True)
    interval_seconds = models.PositiveIntegerField(default=default_interval_seconds)
    timeout_seconds = models.FloatField(default=default_timeout_seconds)
    warn = models.FloatField(null=True, blank=True, help_text="Empty: the kind's default.")
    crit = models.FloatField(null=True, blank=True, help_text="Empty: the kind's default.")
    direction = models.CharField(
        max_length=10,
        choices=Direction.choices,
        blank=True,
        default="",
        help_text="Empty: the kind's default.",
    )
    debounce = models.PositiveSmallIntegerField(
        default=1, help_text="Consecutive failing runs before the status changes."
    )
    baseline = models.JSONField(
        null=True, blank=True, help_text='e.g. {"drop_pct": 50, "window": 12}'
    )
    startup_grace_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="After the check is created, 'no data' (no rows, NULL, zero) is not an "
        "alarm for this long. Empty: one interval.",
    )
    # Runs before this moment do not count for the baseline (an operator's reset).
    baseline_since = models.DateTimeField(null=True, blank=True, editable=False)
    depends_on = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="dependents"
    )
    enabled = models.BooleanField(default=True)
    ping_uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)

    # Current state, written only by ``record``.
    status = models.CharField(
        max_length=10, choices=CheckStatus.choices, default=CheckStatus.UNKNOWN
    )
    last_value = models.FloatField(null=True, blank=True)
    last_message = models.TextField(blank=True, default="")
    last_run_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    next_run_at = models.DateTimeField(null=True, blank=True)
    # The raw status of the latest runs and how many in a row: debounce counts on these.
    streak_status = models.CharField(
        max_length=10, choices=CheckStatus.choices, blank=True, default=""
    )
    streak_count = models.PositiveIntegerField(default=0)
    # Kind-private memory between runs (e.g. process PIDs and restart times).
    state = models.JSONField(default=dict, blank=True)
    # Kept by the alert lifecycle as the check's alerts open and resolve, so that recording a
    # healthy run of a check without an alert needs no alert lookup (runs and pings).
    has_open_alert = models.BooleanField(default=False, editable=False)
    # The lease of a runner that claimed this check's due slot (``claim_due``): who holds it,
    # until when, and which slot it is for. Only the holder records that slot; an expired
    # lease makes the check due again for the same slot.
    lease_owner = models.CharField(max_length=100, blank=True, default="", editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    lease_slot_at = models.DateTimeField(null=True, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # What a person configures. The rest is runtime state (status, streaks, ``state``, the
    # next slot, a runner's lease, the open-alert flag), moved by recording runs and claiming
    # slots while a person edits: a save of the configuration writes only these
    # (``save_config``), never the runtime state as it was read before.
    CONFIG_FIELDS = (
        "name",
        "kind",
        "component",
        "description",
        "config",
        "interval_seconds",
        "timeout_seconds",
        "warn",
        "crit",
        "direction",
        "debounce",
        "baseline",
        "startup_grace_seconds",
        "depends_on",
        "enabled",
    )

    class Meta:
        ordering = ["component", "name"]
        indexes = [
            # runchecks: "enabled checks due now"
            models.Index(fields=["enabled", "next_run_at"], name="check_due_idx"),
        ]
        permissions = [
            ("author_sql_checks", "Can author SQL checks (queries and database DSNs)"),
        ]

    def __str__(self) -> str:
        return self.name

    # --- configuration helpers ---------------------------------------------------------------
    def save_config(self, fields: list[str] | None = None) -> None:
        """Saves a new check whole; of an existing one, only its configuration (``fields``,
        default every one of ``CONFIG_FIELDS``) and ``updated_at``, so that a run recorded or
        a slot claimed since it was read is not undone."""
        if self._state.adding or self.pk is None:
            self.save()
            return
        chosen = [name for name in (fields or self.CONFIG_FIELDS) if name in self.CONFIG_FIELDS]
        self.save(update_fields=[*chosen, "updated_at"])

    @property
    def kind_impl(self) -> CheckKind:
        return get_kind(self.kind)

    def authored_sql(self) -> dict[str, Any] | None:
        """The query / DSN a person wrote into this check's config (None if it runs none)."""
        try:
            return get_kind(self.kind).authored_sql(self.config or {})
        except ConfigError:
            return None

    def thresholds(self) -> tuple[float | None, float | None, str]:
        """(warn, crit, direction) with the kind's defaults filling what the check leaves empty."""
        default_warn, default_crit, default_direction = self.kind_impl.default_thresholds(
            self.config
        )
        direction = self.direction or default_direction
        warn = self.warn if self.warn is not None else default_warn
        crit = self.crit if self.crit is not None else default_crit
        return warn, crit, direction

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=self.interval_seconds)

    def ping_path(self) -> str:
        return f"/ping/{self.ping_uuid}"

    # --- evaluation --------------------------------------------------------------------------
    def threshold_status(self, value: float | None) -> str:
        if value is None:
            return CheckStatus.OK
        warn, crit, direction = self.thresholds()

        def breached(limit: float | None) -> bool:
            if limit is None:
                return False
            return value < limit if direction == Direction.BELOW else value > limit

        if breached(crit):
            return CheckStatus.CRITICAL
        if breached(warn):
            return CheckStatus.WARNING
        return CheckStatus.OK

    @property
    def startup_grace(self) -> timedelta:
        seconds = self.startup_grace_seconds
        return timedelta(seconds=self.interval_seconds if seconds is None else seconds)

    def in_startup_grace(self, now: datetime) -> bool:
        return self.created_at is not None and now < self.created_at + self.startup_grace

    def evaluate(self, observation: Observation, now: datetime | None = None) -> tuple[str, str]:
        """The raw status and message of one observation, before debounce."""
        status, message, _ = self.evaluate_with_baseline(observation, now)
        return status, message

    def evaluate_with_baseline(
        self, observation: Observation, now: datetime | None = None
    ) -> tuple[str, str, BaselineVerdict | None]:
        """(raw status, message, baseline verdict) of one observation, before debounce."""
        now = now or timezone.now()
        if observation.error:
            return CheckStatus.CRITICAL, observation.error, None
        status = worst(observation.status, self.threshold_status(observation.value))
        message = observation.message
        if observation.status is None and status != CheckStatus.OK:
            warn, crit, direction = self.thresholds()
            limit = crit if status == CheckStatus.CRITICAL else warn
            word = "below" if direction == Direction.BELOW else "above"
            unit = self.kind_impl.unit_for(self.config)
            message = f"{message} ({word} {status} threshold {limit:g}{unit})".strip()
        if (
            observation.no_data
            and SEVERITY_RANK[CheckStatus(status)] > SEVERITY_RANK[CheckStatus.UNKNOWN]
            and self.in_startup_grace(now)
        ):
            # A new check watching data that does not exist yet (a fresh install's first
            # pass): no alarm until the data has had one interval to appear.
            until = self.created_at + self.startup_grace
            return (
                CheckStatus.UNKNOWN,
                f"{message} (start-up grace until {until:%Y-%m-%d %H:%M:%S} UTC: "
                "no data yet is not an alarm)".strip(),
                None,
            )
        verdict = None
        if self.baseline and observation.value is not None:
            verdict = self.baseline_verdict(observation.value)
            if verdict is not None and verdict.breached:
                status = worst(status, verdict.status)
                message = f"{message}; {verdict.message}" if message else verdict.message
        return status, message, verdict

    def baseline_history(self) -> list[float]:
        """The values the baseline is the median of, newest first.

        Runs that were themselves in breach of the baseline are left out, so while a drop
        persists the baseline is frozen at its level before the drop. A time window ends at
        the newest run that was not in breach, for the same reason. Runs before an
        operator's reset (``baseline_since``) do not count. Served by
        checkrun_check_latest_idx: one check's runs, newest first.
        """
        window = window_of(self.baseline or {})
        runs = CheckRun.objects.filter(
            check_obj_id=self.pk, value__isnull=False, details__baseline_breach__isnull=True
        )
        if self.baseline_since is not None:
            runs = runs.filter(created_at__gte=self.baseline_since)
        runs = runs.order_by("-created_at", "-id")
        if window.runs is not None:
            return list(runs.values_list("value", flat=True)[: window.runs])
        newest = runs.values_list("created_at", flat=True).first()
        if newest is None:
            return []
        start = newest - timedelta(seconds=window.seconds or 0)
        return list(runs.filter(created_at__gt=start).values_list("value", flat=True))

    def baseline_verdict(self, value: float | None) -> BaselineVerdict | None:
        """The baseline rule applied to ``value`` (None when there is no rule or history)."""
        rule = self.baseline
        if not rule or value is None or not self.pk:
            return None
        return compare(value, self.baseline_history(), rule)

    def reset_baseline(self, actor: str, now: datetime | None = None) -> str:
        """Starts the baseline afresh from the next runs (the current level is the new normal).

        Logged where an operator looks: on the open alert's timeline when there is one,
        else as a run of the check. Returns where it was logged ("alert #N" or "runs").
        """
        now = now or timezone.now()
        text = f"Baseline reset by {actor}: the next runs make the new baseline"
        with transaction.atomic():
            locked = Check.objects.select_for_update().get(pk=self.pk)
            Check.objects.filter(pk=self.pk).update(baseline_since=now)
            self.baseline_since = now
            # The check's own alert (dedup key "check:<id>", the alert engine's key) if open.
            alert = (
                Alert.objects.filter(
                    check_obj_id=self.pk,
                    dedup_key=f"check:{self.pk}",
                    status__in=ACTIVE_STATUSES,
                )
                .order_by("-id")
                .first()
            )
            if alert is not None:
                alert.add_note(actor, text)
                return f"alert #{alert.pk}"
            CheckRun.objects.create(
                check_obj=self,
                status=locked.status,
                value=None,
                message=text,
                details={"event": "baseline_reset", "actor": actor},
                created_at=now,
            )
        return "runs"

    def _debounced(self, raw: str) -> tuple[str, str, int]:
        """(new check status, streak status, streak count)."""
        streak = self.streak_count + 1 if raw == self.streak_status else 1
        current = self.status if self.status != CheckStatus.PAUSED else CheckStatus.UNKNOWN
        worsening = SEVERITY_RANK[CheckStatus(raw)] > SEVERITY_RANK[CheckStatus(current)]
        if worsening and streak < max(self.debounce, 1):
            return current, raw, streak
        return raw, raw, streak

    def record(
        self, observation: Observation, *, duration_ms: float, now: datetime | None = None
    ) -> CheckRun:
        """Stores one run and moves the check's state; returns the run.

        A run that changes nothing an alert depends on takes the fast path
        (``record_unchanged``); any other is a batch of one of ``record_runs``, the runners'
        write path.
        """
        pending = PendingRun(self, observation, duration_ms, now or timezone.now())
        if not record_unchanged(pending):
            record_runs([pending], isolate=False)
        if pending.run is None:
            raise ValueError(pending.error or "not recorded")
        return pending.run

    # --- scheduling ----------------------------------------------------------------------------
    @classmethod
    def due(cls, now: datetime) -> models.QuerySet[Check]:
        """Enabled checks whose next slot is at or before ``now`` (a leased check's
        ``next_run_at`` is its lease's expiry, so it is due again only if the lease runs out)."""
        return cls.objects.filter(enabled=True).filter(
            models.Q(next_run_at__isnull=True) | models.Q(next_run_at__lte=now)
        )

    @classmethod
    def claim_due(
        cls,
        now: datetime,
        *,
        limit: int,
        owner: str,
        lease_for: Any,
        until: datetime | None = None,
        only: list[int] | None = None,
    ) -> list[Check]:
        """Leases up to ``limit`` due checks (due at or before ``until``, default ``now``) to
        ``owner``; returns them with ``lease_slot_at`` set to the slot each is claimed for.

        Two statements in one transaction: the due rows, locked and skipping rows another
        runner is claiming (PostgreSQL ``FOR UPDATE SKIP LOCKED``; SQLite's IMMEDIATE
        transaction serialises claimers instead), then one UPDATE that leases them all. The
        slot is the one a lost lease left behind, else ``next_run_at`` (a new check: now).
        ``lease_for(checks) -> seconds`` sizes the lease from the claimed checks' timeouts;
        ``next_run_at`` moves to the lease's end, so the due index finds an abandoned claim.
        """
        with transaction.atomic():
            rows = cls.due(until or now)
            if only is not None:
                rows = rows.filter(pk__in=only)
            checks = list(
                rows.select_for_update(skip_locked=True).order_by(
                    models.F("next_run_at").asc(nulls_first=True), "id"
                )[:limit]
            )
            if not checks:
                return []
            expires = now + timedelta(seconds=lease_for(checks))
            # Rows locked above (PostgreSQL) or the whole database (SQLite): all of them match.
            cls.objects.filter(pk__in=[c.pk for c in checks]).update(
                lease_owner=owner,
                lease_expires_at=expires,
                lease_slot_at=Coalesce("lease_slot_at", "next_run_at", Value(now)),
                next_run_at=expires,
            )
        for check in checks:
            check.lease_slot_at = check.lease_slot_at or check.next_run_at or now
            check.lease_owner, check.lease_expires_at, check.next_run_at = owner, expires, expires
        return checks

    @classmethod
    def release(cls, checks: list[Check], now: datetime) -> int:
        """Gives back claimed slots that will not run (a runner stopping): due again at once,
        for the same slot. Only the lease's holder can give it back."""
        released = 0
        for check in checks:
            released += cls.objects.filter(
                pk=check.pk, lease_owner=check.lease_owner, lease_slot_at=check.lease_slot_at
            ).update(next_run_at=now, lease_expires_at=now)
        return released

    @classmethod
    def skip_slot(cls, check: Check, now: datetime) -> bool:
        """Moves a claimed check past its slot without a run (its record failed): it runs
        again at its next slot, not in a retry storm. Only the lease's holder can."""
        slot = check.lease_slot_at
        if slot is None or not check.lease_owner:
            return False
        return bool(
            cls.objects.filter(
                pk=check.pk, lease_owner=check.lease_owner, lease_slot_at=slot
            ).update(
                next_run_at=next_slot(slot, check.interval_seconds, now),
                lease_owner="",
                lease_expires_at=None,
                lease_slot_at=None,
            )
        )


# A runner more than this far behind a check's slots (all runners were down) skips to the
# latest one instead of running every missed slot back to back; within it, slots missed while
# a dead runner's lease ran out are all run, late but none lost.
CATCH_UP_MIN = timedelta(minutes=2)
CATCH_UP_INTERVALS = 2


def next_slot(
    slot: datetime, interval_seconds: int, now: datetime, *, after: datetime | None = None
) -> datetime:
    """The slot after ``slot``: an interval later whenever the run happened, so the schedule
    does not drift by the runs' lateness. Far behind, the latest slot not after ``now``.
    ``after`` (the scheduled pass's horizon): the first slot later than it, so one pass runs
    a check once."""
    step = timedelta(seconds=max(int(interval_seconds), 1))
    following = slot + step
    if after is not None and following <= after:
        return slot + ((after - slot) // step + 1) * step
    if now - following > max(CATCH_UP_MIN, CATCH_UP_INTERVALS * step):
        following = slot + ((now - slot) // step) * step
    return following


# --- recording ---------------------------------------------------------------------------------

# Observed as each claimed slot's run is recorded (a durable histogram, opsconsole.counters):
# seconds from the slot (the check's due time) to its run being stored.
RUN_LAG_HISTOGRAM = "opsconsole_check_run_lag_seconds"
RUN_LAG_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)

# What ``record_runs`` reads under the row lock and writes back in one statement.
_STATE_FIELDS = (
    "status",
    "streak_status",
    "streak_count",
    "state",
    "has_open_alert",
    "status_changed_at",
    "next_run_at",
    "lease_owner",
    "lease_expires_at",
    "lease_slot_at",
    "interval_seconds",
)
_WRITTEN_FIELDS = (
    "status",
    "last_value",
    "last_message",
    "last_run_at",
    "streak_status",
    "streak_count",
    "state",
    "status_changed_at",
    "next_run_at",
    "lease_owner",
    "lease_expires_at",
    "lease_slot_at",
)


@dataclass
class PendingRun:
    """One observation on its way to becoming a run.

    ``slot_at`` and ``lease_owner``: a claimed slot, recorded only while ``lease_owner`` still
    holds the lease for it (the database's unique (check, slot_at) refuses a second run of a
    slot whatever happens). ``forced``: a run nobody scheduled ("run now"), which moves the
    next slot an interval on. ``after``: the scheduled pass's horizon (see ``next_slot``).
    ``run``, or ``error`` when it was not recorded, are filled in by ``record_runs``.
    """

    check: Check
    observation: Observation
    duration_ms: float
    now: datetime
    slot_at: datetime | None = None
    lease_owner: str = ""
    forced: bool = False
    after: datetime | None = None
    run: CheckRun | None = None
    error: str | None = None
    # Not recorded because it is not this run's to record (its check is gone, or its slot's
    # lease went to another runner), as opposed to a run the database refused.
    superseded: bool = False
    # Set by record_runs: the evaluated run, before debounce.
    _evaluated: tuple[str, str, dict[str, Any]] | None = field(default=None, repr=False)


def _evaluate(pending: PendingRun) -> tuple[str, str, dict[str, Any]]:
    check, observation = pending.check, pending.observation
    raw_status, message, verdict = check.evaluate_with_baseline(observation, pending.now)
    details = dict(observation.details or {})
    if verdict is not None:
        details["baseline"] = round(verdict.baseline, 4)
        if verdict.breached:
            # Keeps this value out of the baseline (see baseline_history).
            details["baseline_breach"] = True
    return raw_status, message[:2000], details


def record_runs(pending: list[PendingRun], *, isolate: bool = True, locked: bool = False) -> None:
    """Records a batch of runs: the one write path of checks (runners, the scheduled pass,
    "run now", pings).

    Evaluation (thresholds, baseline, start-up grace) happens first, outside the transaction.
    Then, in one transaction: the checks' state read under a row lock (one SELECT; skipped
    with ``locked`` when the caller already holds the lock and passes fresh rows, as a ping
    does), debounce, one INSERT of every run, one UPDATE of every check, and the after-record
    hooks, which look at alerts only where something can change (``alerts.lifecycle``).

    A run whose slot's lease was lost is skipped (``error`` says so). With ``isolate``, a
    batch that cannot be stored (one run the database refuses) is retried a run at a time, so
    one bad run never loses the others, and what still fails gets its ``error``; without it
    the error is raised.
    """
    pending = [p for p in pending if p.run is None]
    if not pending:
        return
    ready = []
    for p in pending:
        try:
            p._evaluated = _evaluate(p)
        except Exception as exc:
            if not isolate:
                raise
            p.error = f"not recorded: {type(exc).__name__}: {exc}"
            logger.exception(
                "recording the run of %s failed", p.check.name, extra={"check": p.check.name}
            )
        else:
            ready.append(p)
    pending = ready
    if not pending:
        return
    try:
        _store(pending, locked=locked)
    except Exception:
        if not isolate:
            raise
        # Rolled back: retried a run at a time, each from the checks' state read afresh.
        for p in pending:
            p.run, p.error, p.superseded = None, None, False
        for p in pending:
            try:
                _store([p], locked=False)
            except Exception as exc:  # noqa: BLE001 - recorded as the run's error
                p.run = None
                p.error = f"not recorded: {type(exc).__name__}: {exc}"
                logger.exception(
                    "recording the run of %s failed",
                    p.check.name,
                    extra={"check": p.check.name},
                )
    _observe_lag([p for p in pending if p.run is not None and p.slot_at is not None])


def needs_alert_logic(status: str, has_open_alert: bool) -> bool:
    """Whether recording a run can change anything about alerts: the check is failing (its
    alert opens, counts or waits on a dependency) or it has an active alert (to resolve, or a
    flapping one to settle). A healthy change without an open alert (a new check's first OK,
    a recovery whose alert never opened) has nothing to resolve, and flapping is caught at
    the changes into a failing status. The after-record hook and the fast path both ask this."""
    return has_open_alert or status in (CheckStatus.WARNING, CheckStatus.CRITICAL)


def _transition(p: PendingRun) -> tuple[dict[str, Any], str]:
    """The check's new state after ``p`` (debounce applied to its current attributes, which
    the caller has made current), and its status before; sets ``p.run`` (unsaved)."""
    check = p.check
    raw_status, message, details = p._evaluated or _evaluate(p)
    previous = check.status
    new_status, streak_status, streak_count = check._debounced(raw_status)
    changed = new_status != previous
    fields: dict[str, Any] = {
        "status": new_status,
        "last_value": p.observation.value,
        "last_message": message,
        "last_run_at": p.now,
        "streak_status": streak_status,
        "streak_count": streak_count,
        "state": {**(check.state or {}), **(p.observation.state or {})},
        "status_changed_at": p.now if changed else check.status_changed_at,
    }
    if p.lease_owner and p.slot_at is not None:
        fields.update(
            next_run_at=next_slot(p.slot_at, check.interval_seconds, p.now, after=p.after),
            lease_owner="",
            lease_expires_at=None,
            lease_slot_at=None,
        )
    elif p.forced and not (check.lease_expires_at is not None and check.lease_expires_at > p.now):
        # "Run now" still moves the slot, so the next due run is an interval later (a slot a
        # runner holds is left to it).
        fields["next_run_at"] = p.now + check.interval
    p.run = CheckRun(
        check_obj=check,
        status=raw_status,
        value=p.observation.value,
        message=message,
        details=details,
        duration_ms=round(p.duration_ms, 2),
        created_at=p.now,
        status_changed=changed,
        slot_at=p.slot_at if p.lease_owner else None,
    )
    return fields, previous


def record_unchanged(p: PendingRun) -> bool:
    """The fast path of a run that changes nothing an alert depends on (a healthy ping or run
    of a check without an alert): one INSERT and one guarded UPDATE, no transaction, no lock,
    no alert lookup. False, with nothing written, when it does not apply: the caller then
    records through ``record_runs``.

    ``p.check`` must be as recently read as possible: the UPDATE only applies if the check's
    status and streak (which every record moves) are still what it says, so a concurrent
    record sends this one to the locked path instead of being overwritten. A slot run never
    comes here (its lease is checked under the lock).
    """
    check = p.check
    if p.slot_at is not None or p.lease_owner or p.forced or check.has_open_alert:
        return False
    if p._evaluated is None:
        p._evaluated = _evaluate(p)
    expected = {
        "status": check.status,
        "streak_status": check.streak_status,
        "streak_count": check.streak_count,
    }
    fields, previous = _transition(p)
    run = p.run
    assert run is not None
    if needs_alert_logic(fields["status"], False):
        p.run = None
        return False
    statements = _hot_statements()
    # The run first: a run the database refuses leaves the check as it was.
    statements.insert_run(run)
    if not statements.update_check(check.pk, expected, fields):
        # Another record came first: this run goes the locked way, from the state it left.
        CheckRun.objects.filter(pk=run.pk).delete()
        p.run = None
        return False
    for name, value in fields.items():
        setattr(check, name, value)
    return True


class _HotStatements:
    """The statements of the fast path (a ping: find the check, insert its run, move its
    state), their SQL built once per database connection from the models' fields.

    Built by the ORM's compiler on every call they cost more CPU than the database spent
    running them: about half of a ping's server time went to compiling three statements.
    Values go through each field's own conversions (``get_db_prep_save`` on the way in, the
    backend's and the field's converters on the way out), so what is read and written is
    exactly what the ORM would read and write.
    """

    _RUN_FIELDS = (
        "check_obj",
        "status",
        "value",
        "message",
        "details",
        "duration_ms",
        "created_at",
        "status_changed",
        "slot_at",
    )

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        qn = conn.ops.quote_name
        check_table = Check._meta.db_table
        self.check_fields = list(Check._meta.concrete_fields)
        columns = ", ".join(qn(f.column) for f in self.check_fields)
        self.ping_uuid_field = Check._meta.get_field("ping_uuid")
        self.select_by_ping = (
            f"SELECT {columns} FROM {qn(check_table)} WHERE {qn(self.ping_uuid_field.column)} = %s"
        )
        self.converters = []
        for f in self.check_fields:
            column = f.get_col(check_table)
            found = conn.ops.get_db_converters(column) + column.get_db_converters(conn)
            self.converters.append((found, column) if found else None)
        run_table = CheckRun._meta.db_table
        self.run_fields = [CheckRun._meta.get_field(name) for name in self._RUN_FIELDS]
        run_columns = ", ".join(qn(f.column) for f in self.run_fields)
        placeholders = ", ".join(["%s"] * len(self.run_fields))
        self.insert_run_sql = f"INSERT INTO {qn(run_table)} ({run_columns}) VALUES ({placeholders})"
        self.returns_id = bool(conn.features.can_return_columns_from_insert)
        if self.returns_id:
            self.insert_run_sql += f" RETURNING {qn(CheckRun._meta.pk.column)}"
        self._updates: dict[tuple[str, ...], tuple[str, list[models.Field]]] = {}

    def check_by_ping_uuid(self, ping_uuid: uuid.UUID) -> Check | None:
        """The check with this ping UUID, every field loaded (as ``Check.objects.get``)."""
        param = self.ping_uuid_field.get_db_prep_value(ping_uuid, self.conn)
        with self.conn.cursor() as cursor:
            cursor.execute(self.select_by_ping, [param])
            row = cursor.fetchone()
        if row is None:
            return None
        values = list(row)
        for i, converting in enumerate(self.converters):
            if converting is not None:
                found, column = converting
                for converter in found:
                    values[i] = converter(values[i], column, self.conn)
        return Check.from_db(self.conn.alias, None, values)

    def insert_run(self, run: CheckRun) -> None:
        """``run.save(force_insert=True)`` in one statement (no signals: none listen)."""
        params = [f.get_db_prep_save(getattr(run, f.attname), self.conn) for f in self.run_fields]
        with self.conn.cursor() as cursor:
            cursor.execute(self.insert_run_sql, params)
            if self.returns_id:
                run.pk = cursor.fetchone()[0]
            else:
                run.pk = self.conn.ops.last_insert_id(
                    cursor, CheckRun._meta.db_table, CheckRun._meta.pk.column
                )
        run._state.adding = False
        run._state.db = self.conn.alias

    def update_check(self, pk: int, expected: dict[str, Any], fields: dict[str, Any]) -> bool:
        """Writes ``fields`` to the check if it has no open alert and its columns are still
        ``expected`` (none of them NULL); whether it did."""
        key = (*fields, "|", *expected)
        built = self._updates.get(key)
        if built is None:
            qn = self.conn.ops.quote_name
            written = [Check._meta.get_field(name) for name in fields]
            guarded = [Check._meta.get_field(name) for name in expected]
            sets = ", ".join(f"{qn(f.column)} = %s" for f in written)
            where = " AND ".join(
                f"{qn(f.column)} = %s"
                for f in [Check._meta.pk, Check._meta.get_field("has_open_alert"), *guarded]
            )
            built = (f"UPDATE {qn(Check._meta.db_table)} SET {sets} WHERE {where}", written)
            self._updates[key] = built
        sql, written = built
        params = [f.get_db_prep_save(fields[f.name], self.conn) for f in written]
        params += [pk, False, *expected.values()]
        with self.conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount > 0


# Per connection object (each thread has its own), dropped with it.
_hot_by_connection: weakref.WeakKeyDictionary[Any, _HotStatements] = weakref.WeakKeyDictionary()


def _hot_statements() -> _HotStatements:
    conn = connections[DEFAULT_DB_ALIAS]
    statements = _hot_by_connection.get(conn)
    if statements is None:
        statements = _hot_by_connection[conn] = _HotStatements(conn)
    return statements


def check_by_ping_uuid(ping_uuid: uuid.UUID) -> Check | None:
    """The check a ping URL names (one statement; None when no check has it)."""
    return _hot_statements().check_by_ping_uuid(ping_uuid)


def _store(pending: list[PendingRun], *, locked: bool) -> None:
    runs: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    recorded: list[tuple[PendingRun, str]] = []
    # ``locked``: the caller's transaction holds the rows; no savepoint of its own (two more
    # statements on a ping, and the caller's transaction ends with it anyway).
    with transaction.atomic(savepoint=not locked):
        if locked:
            current = {p.check.pk: {f: getattr(p.check, f) for f in _STATE_FIELDS} for p in pending}
        else:
            ids = sorted({p.check.pk for p in pending})
            current = {
                row["id"]: row
                for row in Check.objects.select_for_update()
                .filter(pk__in=ids)
                .order_by("pk")
                .values("id", *_STATE_FIELDS)
            }
        for p in pending:
            row = current.get(p.check.pk)
            if row is None:
                p.error, p.superseded = "not recorded: the check was deleted", True
                continue
            if p.lease_owner and (
                row["lease_owner"] != p.lease_owner or row["lease_slot_at"] != p.slot_at
            ):
                p.error = "not recorded: the lease on this slot was lost to another runner"
                p.superseded = True
                continue
            check = p.check
            for name, value in row.items():
                if name != "id":
                    setattr(check, name, value)
            fields, previous = _transition(p)
            # Every row of the statement writes the same columns: unchanged ones as they are.
            fields = {name: fields.get(name, getattr(check, name)) for name in _WRITTEN_FIELDS}
            for name, value in fields.items():
                setattr(check, name, value)
            run = p.run
            assert run is not None
            runs.append(
                {
                    "check_obj_id": check.pk,
                    "status": run.status,
                    "value": run.value,
                    "message": run.message,
                    "details": run.details,
                    "duration_ms": run.duration_ms,
                    "created_at": run.created_at,
                    "status_changed": run.status_changed,
                    "slot_at": run.slot_at,
                }
            )
            updates.append({"id": check.pk, **fields})
            recorded.append((p, previous))
        insert_rows(CheckRun, runs)
        if len(updates) == 1:
            values = dict(updates[0])
            Check.objects.filter(pk=values.pop("id")).update(**values)
        elif updates:
            _update_checks(updates)
        for p, previous in recorded:
            for hook in _after_record_hooks:
                hook(p.check, p.run, previous)


def _observe_lag(pending: list[PendingRun]) -> None:
    """The lag histogram, in its own statement after the runs committed: the counter rows are
    shared by every runner, and holding their locks for a whole batch would serialise them."""
    if not pending:
        return
    lags = [(p.now - p.slot_at).total_seconds() for p in pending if p.slot_at is not None]
    try:
        count_events(histogram_events(RUN_LAG_HISTOGRAM, lags, RUN_LAG_BUCKETS))
    except Exception:  # noqa: BLE001 - a metric must never fail a recorded batch
        logger.warning("could not count the runs' lag", exc_info=True)


def _update_checks(rows: list[dict[str, Any]]) -> None:
    """One UPDATE of many checks, each to its own values: the rows travel as one JSON
    parameter, as in ``opsconsole.bulk.insert_rows`` (Django's ``bulk_update`` would split
    into several statements on SQLite and write a CASE per column and row)."""
    fields = [Check._meta.get_field(name) for name in _WRITTEN_FIELDS]
    table = connection.ops.quote_name(Check._meta.db_table)
    pk = connection.ops.quote_name(Check._meta.pk.column)
    if connection.vendor == "postgresql":
        records = [{f.column: row[f.attname] for f in fields} | {"id": row["id"]} for row in rows]
        typed = ", ".join(
            [f"{pk} bigint"]
            + [f"{connection.ops.quote_name(f.column)} {f.db_type(connection)}" for f in fields]
        )
        sets = ", ".join(
            f"{connection.ops.quote_name(f.column)} = x.{connection.ops.quote_name(f.column)}"
            for f in fields
        )
        sql = (
            f"UPDATE {table} SET {sets} FROM jsonb_to_recordset(%s::jsonb) AS x({typed}) "
            f"WHERE {table}.{pk} = x.{pk}"
        )
    else:
        records = [
            [row["id"]] + [f.get_db_prep_value(row[f.attname], connection) for f in fields]
            for row in rows
        ]
        picks = ", ".join(f"json_extract(value, '$[{i}]') AS c{i}" for i in range(len(fields) + 1))
        sets = ", ".join(
            f"{connection.ops.quote_name(f.column)} = x.c{i + 1}" for i, f in enumerate(fields)
        )
        sql = (
            f"UPDATE {table} SET {sets} FROM (SELECT {picks} FROM json_each(%s)) AS x "
            f"WHERE {table}.{pk} = x.c0"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(records, default=_json_default)])


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


# Functions called inside the recording transaction, as hook(check, run, previous_status).
# The alert engine registers itself here from ``MonitoringConfig.ready``.
_after_record_hooks: list[Any] = []


def register_after_record(hook: Any) -> None:
    if hook not in _after_record_hooks:
        _after_record_hooks.append(hook)


class CheckRun(models.Model):
    # "check" would shadow Model.check(), which Django's system checks call.
    check_obj = models.ForeignKey(
        Check,
        on_delete=models.CASCADE,
        related_name="runs",
        db_column="check_id",
        verbose_name="check",
    )
    status = models.CharField(max_length=10, choices=CheckStatus.choices)
    value = models.FloatField(null=True, blank=True)
    message = models.TextField(blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    duration_ms = models.FloatField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    status_changed = models.BooleanField(default=False)
    # The due time this run is for, when a runner claimed it (empty for pings and "run now").
    slot_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Exactly once per slot, enforced by the database whatever the runners do: a
            # second run of a slot fails its insert (NULL slots, pings and "run now", never
            # collide). Also serves "runs of one check by slot".
            models.UniqueConstraint(fields=["check_obj", "slot_at"], name="checkrun_one_per_slot"),
        ]
        indexes = [
            # check page and baselines: "latest runs of one check"
            models.Index(fields=["check_obj", "-created_at"], name="checkrun_check_latest_idx"),
            # admin changelist and delta view: "latest runs overall"
            models.Index(fields=["-created_at", "-id"], name="checkrun_latest_idx"),
            # admin filtered by status, delta counts by status
            models.Index(
                fields=["status", "-created_at", "-id"], name="checkrun_status_latest_idx"
            ),
            # uptime, retention's "always keep status changes": one check's status changes in
            # time order. Partial (a few rows in thousands) and, on PostgreSQL, covering the
            # status, so uptime over 500 checks reads the index alone, not a page per change.
            models.Index(
                fields=["check_obj", "created_at"],
                condition=models.Q(status_changed=True),
                include=["status", "id"],
                name="checkrun_changes_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.check_obj_id} {self.status} at {self.created_at:%Y-%m-%d %H:%M:%S}"
