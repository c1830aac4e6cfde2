"""``/batches/`` and ``/batches/<id>/``: progress, rate, time left, items; retry and cancel.

Views are thin: the batch model does the work (``retry_failed``, ``cancel``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import messages
from django.db.models import Count, Window
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from batches.models import ACTIVE_STATUSES, BatchOperation, BatchStatus, ItemStatus
from opsconsole.page_access import BATCH_CHANGE, staff_action, staff_page
from opsconsole.paging import keyset, latest_first
from opsconsole.registries import DashboardPanel, register_panel

ITEMS_PER_PAGE = 50


@require_GET
@staff_page
def batch_list(request: HttpRequest) -> HttpResponse:
    queryset = BatchOperation.objects.defer("payload")
    status = request.GET.get("status", "")
    if status in BatchStatus.values:
        queryset = queryset.filter(status=status)  # batch_status_created_idx
    page = latest_first(queryset, request.GET.get("before"))
    return render(
        request,
        "pages/batch_list.html",
        {
            "batches": page,
            "status": status,
            "statuses": BatchStatus.choices,
        },
    )


def progress(batch: BatchOperation) -> dict[str, Any]:
    """Rate since the batch started and the time left at that rate."""
    done = batch.succeeded_items + batch.failed_items
    pending = batch.pending_items
    rate = remaining = None
    if batch.started_at and done:
        end = batch.finished_at or timezone.now()
        elapsed = max((end - batch.started_at).total_seconds(), 0.001)
        rate = done / elapsed
        remaining = pending / rate if pending else 0.0
    return {"done": done, "pending": pending, "rate": rate, "remaining": remaining}


def _detail_context(request: HttpRequest, batch_id: str) -> dict[str, Any]:
    batch = get_object_or_404(BatchOperation, pk=batch_id)
    return {"batch": batch, "progress": progress(batch)}


@require_GET
@staff_page
def batch_detail(request: HttpRequest, batch_id: str) -> HttpResponse:
    context = _detail_context(request, batch_id)
    items = context["batch"].items.all()
    status = request.GET.get("status", "")
    if status in ItemStatus.values:
        items = items.filter(status=status)
    # (batch, key) is unique and indexed: paging by key reads one index range per page.
    context["items"] = keyset(
        items.defer("result"),
        request.GET.get("after"),
        field="key",
        descending=False,
        per_page=ITEMS_PER_PAGE,
    )
    context["item_status"] = status
    context["item_statuses"] = ItemStatus.choices
    return render(request, "pages/batch_detail.html", context)


@require_GET
@staff_page
def batch_progress_fragment(request: HttpRequest, batch_id: str) -> HttpResponse:
    """The progress card alone, re-fetched by the page while the batch runs."""
    response = render(request, "pages/_batch_progress.html", _detail_context(request, batch_id))
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@staff_action(BATCH_CHANGE)
def retry_failed(request: HttpRequest, batch_id: str) -> HttpResponse:
    batch = get_object_or_404(BatchOperation, pk=batch_id)
    count = batch.retry_failed()
    if count:
        messages.success(request, f"Retrying {count} failed item{'s' if count != 1 else ''}.")
    else:
        messages.info(
            request, "Nothing to retry: the batch is still running or has no failed items."
        )
    return redirect("batch-detail", batch_id=batch.pk)


@require_POST
@staff_action(BATCH_CHANGE)
def cancel(request: HttpRequest, batch_id: str) -> HttpResponse:
    batch = get_object_or_404(BatchOperation, pk=batch_id)
    if batch.cancel():
        messages.success(request, "Batch cancelled; pending items will not run.")
    else:
        messages.info(request, f"The batch had already finished ({batch.status}).")
    return redirect("batch-detail", batch_id=batch.pk)


# --- the dashboard's section -------------------------------------------------------------------

BATCHES_SHOWN = 10


def batches_in_flight(now: datetime) -> dict[str, Any]:
    in_flight = BatchOperation.objects.filter(status__in=ACTIVE_STATUSES).defer("payload")
    # COUNT(*) OVER () is computed before the LIMIT: one query gives the rows and the total.
    batches = list(
        in_flight.annotate(in_flight_total=Window(Count("id"))).order_by("-created_at")[
            :BATCHES_SHOWN
        ]
    )
    return {"batches": batches, "total": batches[0].in_flight_total if batches else 0}


def register_panels() -> None:
    """Called from ``BatchesConfig.ready``."""
    register_panel(DashboardPanel("batches", "pages/panels/batches.html", batches_in_flight, 20))
