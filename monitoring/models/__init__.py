"""The monitoring app's models, one module per aggregate:

- ``checks``: checks and their runs (and the status vocabulary they share);
- ``alerts``: alerts and their timeline events;
- ``notifications``: channels, the escalation policy and the notifications owed;
- ``maintenance``: maintenance windows;
- ``reports``: saved health reports;
- ``history``: runs summarised per check and time bucket (rollups).
"""

from monitoring.models.alerts import (
    ACTIVE_STATUSES,
    SEVERITY_ORDER,
    SNOOZE_MAX,
    SNOOZE_MIN,
    Alert,
    AlertEvent,
    AlertEventKind,
    AlertSeverity,
    AlertStateError,
    AlertStatus,
)
from monitoring.models.checks import (
    SEVERITY_RANK,
    Check,
    CheckRun,
    CheckStatus,
    Direction,
    can_author_sql,
    register_after_record,
    worst,
)
from monitoring.models.history import CheckRollup, RollupPeriod
from monitoring.models.maintenance import MaintenanceWindow, WindowSource
from monitoring.models.notifications import (
    ChannelKind,
    EscalationPolicy,
    EscalationStep,
    Notification,
    NotificationChannel,
    NotificationStatus,
    StepKind,
)
from monitoring.models.reports import Report, ReportLayout

__all__ = [
    "ACTIVE_STATUSES",
    "SEVERITY_ORDER",
    "SEVERITY_RANK",
    "SNOOZE_MAX",
    "SNOOZE_MIN",
    "Alert",
    "AlertEvent",
    "AlertEventKind",
    "AlertSeverity",
    "AlertStateError",
    "AlertStatus",
    "ChannelKind",
    "Check",
    "CheckRollup",
    "CheckRun",
    "CheckStatus",
    "Direction",
    "EscalationPolicy",
    "EscalationStep",
    "MaintenanceWindow",
    "WindowSource",
    "Notification",
    "NotificationChannel",
    "NotificationStatus",
    "Report",
    "ReportLayout",
    "RollupPeriod",
    "StepKind",
    "can_author_sql",
    "register_after_record",
    "worst",
]
