"""``/reports/`` and ``/reports/<id>/``: the saved health reports, as a page of sections and
as text (``?format=text``, ``&download=1`` for a file)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from monitoring.models import CheckStatus, Report
from opsconsole.page_access import staff_page
from opsconsole.paging import latest_first

# Badge classes a stored status may turn into; anything else shows as unknown.
BADGE_CLASSES = set(CheckStatus.values) | {"info"}
FORMATS = ("html", "text")


def _badge(status: Any) -> str:
    return status if status in BADGE_CLASSES else CheckStatus.UNKNOWN


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def page_sections(sections: Any) -> list[dict[str, Any]]:
    """The stored sections with every status reduced to a known badge class (a report is
    JSON: the page never trusts it to be well formed)."""
    if not isinstance(sections, list):
        return []
    shown = []
    for section in sections:
        if not isinstance(section, dict) or "kind" not in section:
            continue
        section = dict(section, badge=_badge(section.get("status")))
        for key in ("entries", "lines", "figures", "alerts"):
            section[key] = [
                dict(
                    item,
                    # An alert's colour is its severity (its status is open or acknowledged).
                    badge=_badge(item.get("severity") or item.get("status")),
                    # Links only to a whole-number id: anything else would not reverse.
                    link_id=_whole(item.get("id") or item.get("check_id")),
                )
                for item in section.get(key) or []
                if isinstance(item, dict)
            ]
        column = section.get("status_column")
        rows = section.get("rows") if isinstance(section.get("rows"), list) else []
        section["rows"] = [
            [
                {"badge": _badge(value)} if index == column else value
                for index, value in enumerate(row)
            ]
            for row in rows
            if isinstance(row, list)
        ]
        section["columns"] = [str(c) for c in section.get("columns") or []]
        if isinstance(section.get("console"), dict):
            console = section["console"]
            section["console"] = dict(
                console,
                badge=_badge(console.get("status")),
                redis_badge=_badge(console.get("redis_status")),
            )
        shown.append(section)
    return shown


@require_GET
@staff_page
def report_list(request: HttpRequest) -> HttpResponse:
    page = latest_first(
        Report.objects.defer("text", "data", "sections"), request.GET.get("before"), 50
    )
    return render(request, "pages/report_list.html", {"reports": page})


@require_GET
@staff_page
def report_detail(request: HttpRequest, report_id: int) -> HttpResponse:
    report = get_object_or_404(Report, pk=report_id)
    wanted = request.GET.get("format", "html")
    if wanted not in FORMATS:
        return HttpResponseBadRequest(
            f"format: must be one of {', '.join(FORMATS)}", content_type="text/plain"
        )
    if wanted == "text":
        response = HttpResponse(report.text, content_type="text/plain; charset=utf-8")
        disposition = "attachment" if request.GET.get("download") else "inline"
        filename = f"health-report-{report.pk}-{report.created_at:%Y%m%d-%H%M}.txt"
        response["Content-Disposition"] = f'{disposition}; filename="{filename}"'
        return response
    heading = (report.data or {}).get("heading") if isinstance(report.data, dict) else None
    return render(
        request,
        "pages/report_detail.html",
        {
            "report": report,
            "heading": heading or report.title,
            "stamp": (report.data or {}).get("timestamp", "") if heading else "",
            "sections": page_sections(report.sections),
        },
    )
