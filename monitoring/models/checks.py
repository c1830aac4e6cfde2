"""Checks and their runs. A check's status only changes through ``Check.record``."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from monitoring.checks.baseline import BaselineVerdict, compare, window_of
from monitoring.kinds import CheckKind, ConfigError, get_kind
from monitoring.models.alerts import ACTIVE_STATUSES, Alert

if TYPE_CHECKING:
    from monitoring.kinds import Observation


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

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

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
        """Stores one run and moves the check's state; returns the run."""
        now = now or timezone.now()
        raw_status, message, verdict = self.evaluate_with_baseline(observation, now)
        details = dict(observation.details or {})
        if verdict is not None:
            details["baseline"] = round(verdict.baseline, 4)
            if verdict.breached:
                # Keeps this value out of the baseline (see baseline_history).
                details["baseline_breach"] = True
        with transaction.atomic():
            locked = Check.objects.select_for_update().get(pk=self.pk)
            previous = locked.status
            locked_state = {**locked.state, **(observation.state or {})}
            self.status, self.streak_status, self.streak_count = (
                previous,
                locked.streak_status,
                locked.streak_count,
            )
            new_status, streak_status, streak_count = self._debounced(raw_status)
            changed = new_status != previous
            run = CheckRun.objects.create(
                check_obj=self,
                status=raw_status,
                value=observation.value,
                message=message[:2000],
                details=details,
                duration_ms=round(duration_ms, 2),
                created_at=now,
                status_changed=changed,
            )
            fields = {
                "status": new_status,
                "last_value": observation.value,
                "last_message": message[:2000],
                "last_run_at": now,
                "streak_status": streak_status,
                "streak_count": streak_count,
                "state": locked_state,
            }
            if changed:
                fields["status_changed_at"] = now
            Check.objects.filter(pk=self.pk).update(**fields)
            for name, value in fields.items():
                setattr(self, name, value)
            for hook in _after_record_hooks:
                hook(self, run, previous)
        return run

    # --- scheduling ----------------------------------------------------------------------------
    def claim_due_slot(self, now: datetime) -> bool:
        """Takes this check's due slot; False if another runner took it first.

        The conditional update is the claim: of two runners that both read the same
        ``next_run_at``, only one update matches.
        """
        # Run slightly early rather than a whole minute late when the scheduler fires a
        # little before the slot: a 1-minute check must run every minute, not every two.
        slack = min(self.interval_seconds * 0.1, 5.0)
        next_run = now + timedelta(seconds=self.interval_seconds - slack)
        claimed = Check.objects.filter(pk=self.pk, next_run_at=self.next_run_at).update(
            next_run_at=next_run
        )
        if claimed:
            self.next_run_at = next_run
        return claimed == 1

    @classmethod
    def due(cls, now: datetime) -> models.QuerySet[Check]:
        return cls.objects.filter(enabled=True).filter(
            models.Q(next_run_at__isnull=True) | models.Q(next_run_at__lte=now)
        )


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

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # check page and baselines: "latest runs of one check"
            models.Index(fields=["check_obj", "-created_at"], name="checkrun_check_latest_idx"),
            # admin changelist and delta view: "latest runs overall"
            models.Index(fields=["-created_at", "-id"], name="checkrun_latest_idx"),
            # admin filtered by status, delta counts by status
            models.Index(
                fields=["status", "-created_at", "-id"], name="checkrun_status_latest_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.check_obj_id} {self.status} at {self.created_at:%Y-%m-%d %H:%M:%S}"
