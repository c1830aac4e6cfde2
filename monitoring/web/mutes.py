"""Which checks are muted now: shown wherever a check appears (dashboard, alerts), so that
nobody waits for a page that a maintenance window or a page mute holds back."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db.models import OuterRef, Q, Subquery

from monitoring.models import Check, MaintenanceWindow


def mute_end(now: datetime) -> Subquery:
    """For annotating checks: when the latest active window covering the check ends (NULL when
    none does). A window covers its check, its component, or everything when it names
    neither, as ``MaintenanceWindow.covers`` decides for alerts. As an annotation it costs no
    query of its own; the active windows are few (maintenance_ends_idx)."""
    unbound = Q(check_obj__isnull=True)
    covering = MaintenanceWindow.objects.active(now).filter(
        Q(check_obj_id=OuterRef("pk"))
        | (unbound & Q(component=OuterRef("component")))
        | (unbound & Q(component=""))
    )
    return Subquery(covering.order_by("-ends_at").values("ends_at")[:1])


def muted_until(checks: Iterable[Check | int], now: datetime) -> dict[int, datetime]:
    """Check id -> when its mute ends, for the muted ones among ``checks`` (checks or ids; one
    query)."""
    ids = [c if isinstance(c, int) else c.pk for c in checks]
    if not ids:
        return {}
    return dict(
        Check.objects.filter(pk__in=ids)
        .annotate(until=mute_end(now))
        .filter(until__isnull=False)
        .values_list("pk", "until")
    )
