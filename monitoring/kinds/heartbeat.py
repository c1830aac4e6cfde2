"""The ``heartbeat`` kind: jobs report in by pinging ``/ping/<uuid>``; silence is the alarm.

Pings arrive through ``monitoring.web.ping`` and each is recorded as a run. ``runchecks`` calls
``observe`` on its own interval to notice a job that stopped pinging: lateness needs no ping.
What a ping must leave for ``observe`` (last ping time, a pending start, the last verdict) is
kept in ``Check.state``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from monitoring.kinds import CheckKind, ConfigError, Observation, check_known_keys, register
from monitoring.kinds.common import duration
from monitoring.models import Check as CheckModel
from monitoring.models import CheckStatus
from opsconsole.env import format_duration

if TYPE_CHECKING:
    from monitoring.checks.prober import ProbeContext
    from monitoring.models import Check

DEFAULT_PERIOD = 86400.0
DEFAULT_GRACE = 3600.0
MAX_BODY_BYTES = 10 * 1024


class PingEvent:
    SUCCESS = "success"
    START = "start"
    FAIL = "fail"


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@register
class HeartbeatKind(CheckKind):
    name = "heartbeat"
    label = "Heartbeat (cron ping)"
    unit = " s"
    pushed = True

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        check_known_keys(config, {"period", "grace", "min_duration", "max_duration"}, errors)
        period = duration(config, "period", errors, DEFAULT_PERIOD)
        grace = duration(config, "grace", errors, DEFAULT_GRACE)
        min_duration = duration(config, "min_duration", errors, None)
        max_duration = duration(config, "max_duration", errors, None)
        if period is not None and period < 1:
            errors["config.period"] = "must be at least 1s"
        if min_duration is not None and max_duration is not None and min_duration > max_duration:
            errors["config.min_duration"] = "is longer than max_duration"
        if errors:
            raise ConfigError(errors)
        normalised: dict[str, Any] = {"period": period, "grace": grace}
        if min_duration is not None:
            normalised["min_duration"] = min_duration
        if max_duration is not None:
            normalised["max_duration"] = max_duration
        return normalised

    # --- a ping arrives ----------------------------------------------------------------------
    def ping_observation(
        self,
        check: Check,
        event: str,
        *,
        now: datetime,
        exit_code: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> Observation:
        """What one ping says; the state it leaves tells ``observe`` what happened last."""
        config = check.config
        state = check.state or {}
        details = dict(details or {}, event=event)
        if exit_code is not None:
            details["exit_code"] = exit_code
        stamp = now.isoformat()

        if event == PingEvent.START:
            # A start is not a verdict: a late or failed check stays so until the job finishes.
            keep = (
                check.status
                if check.status in (CheckStatus.WARNING, CheckStatus.CRITICAL)
                else CheckStatus.OK
            )
            message = "job started" + (
                f"; still {keep}: {check.last_message}" if keep != CheckStatus.OK else ""
            )
            return Observation(
                status=keep,
                message=message[:2000],
                details=details,
                state={"started_at": stamp, "last_event": event, "last_event_at": stamp},
            )

        started = _when(state.get("started_at"))
        took = (now - started).total_seconds() if started and started <= now else None
        if took is not None:
            details["duration_seconds"] = round(took, 3)
        if event == PingEvent.FAIL or (exit_code is not None and exit_code != 0):
            status = CheckStatus.CRITICAL
            message = f"job exited with code {exit_code}" if exit_code else "job reported failure"
        else:
            status, message = (
                CheckStatus.OK,
                "job finished" if took is None else f"job finished in {format_duration(took)}",
            )
            if took is not None and config.get("min_duration") and took < config["min_duration"]:
                status = CheckStatus.WARNING
                message = (
                    f"job finished in {format_duration(took)}, shorter than "
                    f"min_duration {format_duration(config['min_duration'])}"
                )
            elif took is not None and config.get("max_duration") and took > config["max_duration"]:
                status = CheckStatus.WARNING
                message = (
                    f"job took {format_duration(took)}, longer than "
                    f"max_duration {format_duration(config['max_duration'])}"
                )
        return Observation(
            value=round(took, 3) if took is not None else None,
            status=status,
            message=message,
            details=details,
            state={
                "last_ping_at": stamp,
                "last_event": PingEvent.FAIL
                if status == CheckStatus.CRITICAL
                else PingEvent.SUCCESS,
                "last_event_at": stamp,
                "started_at": None,
                "last_ping_status": status,
                "last_ping_message": message,
            },
        )

    # --- runchecks looks at the clock ---------------------------------------------------------
    def observe(self, check: Check, ctx: ProbeContext) -> Observation:
        # Read the state afresh: a ping may have landed since the runner loaded this check.
        state = CheckModel.objects.filter(pk=check.pk).values_list("state", flat=True).first() or {}
        return self.lateness(check, state, timezone.now())

    def lateness(self, check: Check, state: dict[str, Any], now: datetime) -> Observation:
        """The status of a heartbeat at ``now``, given what the pings left in ``state``."""
        config = check.config
        period = float(config.get("period", DEFAULT_PERIOD))
        grace = float(config.get("grace", DEFAULT_GRACE))
        last_ping = _when(state.get("last_ping_at"))
        started = _when(state.get("started_at"))
        every = f"expected every {format_duration(period)} (grace {format_duration(grace)})"

        reference = last_ping or check.created_at
        since = max(0.0, (now - reference).total_seconds())
        details: dict[str, Any] = {
            "last_ping_at": state.get("last_ping_at"),
            "seconds_since_last_ping": round(since, 1) if last_ping else None,
            "period": period,
            "grace": grace,
        }
        running_for = (now - started).total_seconds() if started else None
        max_duration = config.get("max_duration")
        if running_for is not None and max_duration and running_for > max_duration:
            return Observation(
                status=CheckStatus.CRITICAL,
                details=details,
                message=(
                    f"started {format_duration(running_for)} ago and not finished "
                    f"within max_duration {format_duration(max_duration)}"
                ),
            )
        if since > period + grace:
            what = (
                f"last ping {format_duration(since)} ago"
                if last_ping
                else (f"no ping since the check was created {format_duration(since)} ago")
            )
            return Observation(
                status=CheckStatus.CRITICAL, details=details, message=f"late: {what}, {every}"
            )
        if not last_ping:
            return Observation(
                status=CheckStatus.UNKNOWN,
                details=details,
                message=f"waiting for the first ping, {every}",
            )
        last_status = state.get("last_ping_status") or CheckStatus.OK
        if last_status != CheckStatus.OK:
            return Observation(
                status=last_status,
                details=details,
                message=f"{state.get('last_ping_message', '')} ({format_duration(since)} ago)",
            )
        due_in = period - since
        if due_in >= 0:
            message = (
                f"last ping {format_duration(since)} ago, next due in {format_duration(due_in)}"
            )
        else:
            overdue = format_duration(-due_in)
            message = f"last ping {format_duration(since)} ago, due {overdue} ago, within grace"
        return Observation(status=CheckStatus.OK, details=details, message=message)

    def next_due(self, check: Check) -> datetime | None:
        """When the job is due to ping next (None before the first ping)."""
        last_ping = _when((check.state or {}).get("last_ping_at"))
        if last_ping is None:
            return None
        return last_ping + timedelta(seconds=float(check.config.get("period", DEFAULT_PERIOD)))
