"""The latest runs of many checks in one query (reports, alert summaries)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import F, Window
from django.db.models.functions import RowNumber

from monitoring.models import CheckRun


def latest_runs(check_ids: Iterable[int], count: int = 1) -> dict[int, list[CheckRun]]:
    """Each check's ``count`` newest runs, newest first; checks without runs are absent.

    One window query ranks every check's runs, served by checkrun_check_latest_idx.
    """
    ids = sorted(set(check_ids))
    if not ids or count < 1:
        return {}
    ranked = (
        CheckRun.objects.filter(check_obj_id__in=ids)
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("check_obj_id")],
                order_by=[F("created_at").desc(), F("id").desc()],
            )
        )
        .filter(rank__lte=count)
        .order_by("check_obj_id", "rank")
    )
    by_check: dict[int, list[CheckRun]] = {}
    for run in ranked:
        by_check.setdefault(run.check_obj_id, []).append(run)
    return by_check
