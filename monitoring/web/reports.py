"""``/reports/`` and ``/reports/<id>/``: the saved health reports."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from monitoring.models import Report
from opsconsole.page_access import staff_page
from opsconsole.paging import latest_first


@require_GET
@staff_page
def report_list(request: HttpRequest) -> HttpResponse:
    page = latest_first(Report.objects.defer("text", "data"), request.GET.get("before"), 50)
    return render(request, "pages/report_list.html", {"reports": page})


@require_GET
@staff_page
def report_detail(request: HttpRequest, report_id: int) -> HttpResponse:
    report = get_object_or_404(Report, pk=report_id)
    return render(request, "pages/report_detail.html", {"report": report})
