"""``/backlog/``: counts, oldest pending age, entries with their errors, retry failed."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from backlog import services
from backlog.models import BacklogEntry, BacklogStatus
from opsconsole.page_access import BACKLOG_CHANGE, staff_action, staff_page
from opsconsole.paging import keyset
from opsconsole.registries import DashboardPanel, register_panel

PER_PAGE = 50


@require_GET
@staff_page
def backlog_page(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", BacklogStatus.PENDING)
    queryset = BacklogEntry.objects.defer("payload")
    cursor = request.GET.get("after")
    # Each listing walks an index: oldest pending first (the next to sync), other statuses by
    # their latest change, everything by id.
    if status == BacklogStatus.PENDING:
        page = keyset(
            queryset.filter(status=status),
            cursor,
            field="created_at",
            descending=False,
            per_page=PER_PAGE,
        )
    elif status in BacklogStatus.values:
        page = keyset(
            queryset.filter(status=status),
            cursor,
            field="updated_at",
            descending=True,
            per_page=PER_PAGE,
        )
    else:
        status = ""
        page = keyset(queryset, cursor, field="id", descending=True, per_page=PER_PAGE)
    return render(
        request,
        "pages/backlog.html",
        {
            "stats": services.stats(),
            "entries": page,
            "status": status,
            "statuses": BacklogStatus.choices,
        },
    )


@require_POST
@staff_action(BACKLOG_CHANGE)
def retry_failed(request: HttpRequest) -> HttpResponse:
    requeued, skipped = services.retry_failed()
    messages.success(
        request,
        f"Requeued {requeued} failed entries"
        + (f" ({skipped} skipped: already pending or being processed)." if skipped else "."),
    )
    return redirect("backlog")


def register_panels() -> None:
    """The dashboard's backlog section; called from ``BacklogConfig.ready``."""
    register_panel(DashboardPanel("backlog", "pages/panels/backlog.html", services.stats, 30))
