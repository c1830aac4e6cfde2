"""Which checks are muted now: shown wherever a check appears (dashboard, alerts), so that
nobody waits for a page that a maintenance window or a page mute holds back."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from monitoring.models import Check, MaintenanceWindow


def muted_until(checks: Iterable[Check], now: datetime) -> dict[int, datetime]:
    """Check id -> when its latest active window ends, for the muted ones among ``checks``.

    One query for any number of checks: the active windows are few (served by
    maintenance_ends_idx), and a window covers its check, its component, or everything when
    it names neither, as ``MaintenanceWindow.covers`` decides for alerts."""
    windows = list(
        MaintenanceWindow.objects.active(now).values_list("check_obj_id", "component", "ends_at")
    )
    if not windows:
        return {}
    result: dict[int, datetime] = {}
    for check in checks:
        for check_id, component, ends_at in windows:
            covers = (
                check_id == check.pk
                if check_id
                else (component == check.component if component else True)
            )
            if covers and (check.pk not in result or ends_at > result[check.pk]):
                result[check.pk] = ends_at
    return result
