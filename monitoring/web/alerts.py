"""Alert pages, the signed-link acknowledgement and the alerts API. Thin: the model acts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.db.models import Case, IntegerField, Value, When
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from monitoring.alerts.delivery import report_test, test_channels
from monitoring.alerts.report import escalation_report, load_report_inputs
from monitoring.alerts.tokens import read_token
from monitoring.models import (
    Alert,
    AlertSeverity,
    AlertStateError,
    AlertStatus,
)
from monitoring.web.mutes import muted_until
from opsconsole.api import BadRequest, actor_of, api_view, int_param
from opsconsole.env import format_duration, parse_duration
from opsconsole.models import ApiScope
from opsconsole.page_access import ALERT_CHANGE, staff_action, staff_page

SNOOZE_CHOICES = ["30m", "1h", "2h", "4h", "8h", "24h"]


def _status_order() -> Case:
    return Case(
        When(status=AlertStatus.OPEN, then=Value(0)),
        When(status=AlertStatus.ACKNOWLEDGED, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )


@staff_page
def alert_list(request: HttpRequest) -> HttpResponse:
    alerts = Alert.objects.select_related("check_obj")
    status = request.GET.get("status", "")
    severity = request.GET.get("severity", "")
    if status in AlertStatus.values:
        alerts = alerts.filter(status=status)
    if severity in AlertSeverity.values:
        alerts = alerts.filter(severity=severity)
    alerts = list(
        alerts.annotate(order=_status_order()).order_by("order", "-opened_at", "-id")[:200]
    )
    now = timezone.now()
    muted = muted_until({a.check_obj_id for a in alerts if a.check_obj_id and a.is_active}, now)
    for alert in alerts:
        alert.check_muted_until = muted.get(alert.check_obj_id)
    rows = [(alert, format_duration(alert.duration(now).total_seconds())) for alert in alerts]
    return render(
        request,
        "monitoring/alerts/list.html",
        {
            "rows": rows,
            "status": status,
            "severity": severity,
            "statuses": AlertStatus.choices,
            "severities": AlertSeverity.choices,
        },
    )


@staff_page
def alert_detail(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = get_object_or_404(Alert.objects.select_related("check_obj"), pk=alert_id)
    now = timezone.now()
    inputs = load_report_inputs([alert])[alert.pk]
    check = alert.check_obj
    return render(
        request,
        "monitoring/alerts/detail.html",
        {
            "alert": alert,
            "events": alert.events.order_by("created_at", "id")[:500],
            "report": escalation_report(alert, inputs, now),
            "duration": format_duration(alert.duration(now).total_seconds()),
            "snoozed": alert.is_snoozed(now),
            "snooze_choices": SNOOZE_CHOICES,
            "check_muted_until": muted_until([check.pk], now).get(check.pk) if check else None,
        },
    )


def _back(request: HttpRequest, alert: Alert) -> HttpResponse:
    """Back to the alert, or to ``next`` (e.g. the dashboard's ack buttons) if it is local."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}):
        return redirect(target)
    return redirect("alert-detail", alert.pk)


@staff_action(ALERT_CHANGE)
@require_POST
def acknowledge(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = get_object_or_404(Alert, pk=alert_id)
    if alert.acknowledge(request.user.get_username()):
        messages.success(request, "Acknowledged: reminders and escalation stop.")
    else:
        messages.warning(request, f"Nothing to acknowledge: the alert is {alert.status}.")
    return _back(request, alert)


@staff_action(ALERT_CHANGE)
@require_POST
def test_notification(request: HttpRequest, alert_id: int) -> HttpResponse:
    """Sends a test to the channels that would carry this alert, and says what happened."""
    alert = get_object_or_404(Alert, pk=alert_id)
    outcomes = test_channels(alert.severity, request.user.get_username(), f"alert #{alert.pk}")
    for ok, text in report_test(outcomes, alert.severity):
        (messages.success if ok else messages.error)(request, text)
    return _back(request, alert)


@staff_action(ALERT_CHANGE)
@require_POST
def resolve(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = get_object_or_404(Alert, pk=alert_id)
    note = request.POST.get("message", "").strip()
    if alert.resolve(request.user.get_username(), note or "Resolved by hand"):
        messages.success(request, "Resolved.")
    else:
        messages.warning(request, "The alert was already resolved.")
    return _back(request, alert)


@staff_action(ALERT_CHANGE)
@require_POST
def snooze(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = get_object_or_404(Alert, pk=alert_id)
    try:
        duration = timedelta(seconds=parse_duration(request.POST.get("duration", "")))
        alert.snooze(request.user.get_username(), duration)
    except (ValueError, AlertStateError) as exc:
        messages.error(request, f"Not snoozed: {exc}.")
    else:
        messages.success(request, f"Snoozed for {format_duration(duration.total_seconds())}.")
    return _back(request, alert)


@staff_action(ALERT_CHANGE)
@require_POST
def add_note(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = get_object_or_404(Alert, pk=alert_id)
    try:
        alert.add_note(request.user.get_username(), request.POST.get("text", ""))
    except ValueError as exc:
        messages.error(request, f"No note added: {exc}.")
    else:
        messages.success(request, "Note added: it appears under Attempted fixes in the report.")
    return _back(request, alert)


_LINK_PROBLEMS = {
    "expired": "This acknowledge link has expired. Open the alert in the console to acknowledge.",
    "invalid": "This acknowledge link is not valid (it may have been altered or cut short).",
    "missing": "The alert of this link no longer exists.",
    "used": "This acknowledge link has already been used. Nothing was changed.",
}


def ack_link(request: HttpRequest, token: str) -> HttpResponse:
    """GET: a confirmation page (mail scanners follow links; they do not submit forms).
    POST: acknowledge, once."""
    link = read_token(token)
    if link.problem:
        status = 410 if link.problem in ("expired", "used") else 400
        return render(
            request,
            "monitoring/alerts/ack_link.html",
            {
                "problem": _LINK_PROBLEMS[link.problem],
                "alert": link.alert,
            },
            status=status,
        )
    alert = link.alert
    if request.method == "POST":
        if alert.acknowledge_by_link(link.nonce):
            return render(
                request, "monitoring/alerts/ack_link.html", {"alert": alert, "done": True}
            )
        return render(
            request,
            "monitoring/alerts/ack_link.html",
            {
                "problem": _LINK_PROBLEMS["used"],
                "alert": alert,
            },
            status=410,
        )
    return render(request, "monitoring/alerts/ack_link.html", {"alert": alert, "confirm": True})


# --- API ---------------------------------------------------------------------------------------


def alert_as_json(alert: Alert) -> dict[str, Any]:
    def iso(moment):
        return moment.isoformat() if moment else None

    check = alert.check_obj
    return {
        "id": alert.pk,
        "check": check.name if check else None,
        "component": alert.component,
        "severity": alert.severity,
        "status": alert.status,
        "title": alert.title,
        "opened_at": iso(alert.opened_at),
        "acknowledged_at": iso(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by or None,
        "resolved_at": iso(alert.resolved_at),
        "occurrences": alert.occurrences,
    }


@api_view()
def api_alerts(request: HttpRequest) -> JsonResponse:
    alerts = Alert.objects.select_related("check_obj")
    status = request.GET.get("status")
    if status:
        if status not in AlertStatus.values:
            raise BadRequest("invalid filter", {"status": "must be open, acknowledged or resolved"})
        alerts = alerts.filter(status=status)
    severity = request.GET.get("severity")
    if severity:
        if severity not in AlertSeverity.values:
            raise BadRequest("invalid filter", {"severity": "must be info, warning or critical"})
        alerts = alerts.filter(severity=severity)
    limit = int_param(request.GET.get("limit"), "limit", default=500, minimum=1, maximum=1000)
    alerts = alerts.order_by("-opened_at", "-id")[:limit]
    return JsonResponse({"alerts": [alert_as_json(a) for a in alerts]})


@api_view(scope=ApiScope.WRITE, methods=("POST",))
def api_acknowledge(request: HttpRequest, alert_id: int) -> JsonResponse:
    alert = Alert.objects.select_related("check_obj").filter(pk=alert_id).first()
    if alert is None:
        raise BadRequest("no such alert", {"id": f"no alert with id {alert_id}"}, status=404)
    if not alert.acknowledge(actor_of(request), via="API"):
        raise BadRequest(
            "cannot acknowledge", {"status": f"the alert is {alert.status}, not open"}, status=409
        )
    return JsonResponse({"alert": alert_as_json(alert)})
