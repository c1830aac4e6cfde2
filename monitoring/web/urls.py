"""Every route of the monitoring app: pages, the JSON API, heartbeat pings, /metrics."""

from django.urls import path

from monitoring.web import activity, alerts, api, checks, dashboard, ping, reports, status

urlpatterns = [
    # Pages (staff)
    path("", dashboard.dashboard, name="dashboard"),
    path("dashboard/fragment/", dashboard.dashboard_fragment, name="dashboard-fragment"),
    path("checks/", checks.check_list, name="check-list"),
    path("checks/<int:check_id>/", checks.check_detail, name="check-detail"),
    path("checks/<int:check_id>/run/", checks.run_now, name="check-run-now"),
    path("checks/<int:check_id>/mute/", checks.mute, name="check-mute"),
    path(
        "checks/<int:check_id>/test-notification/",
        checks.test_notification,
        name="check-test-notification",
    ),
    path("checks/<int:check_id>/unmute/", checks.unmute, name="check-unmute"),
    path("alerts/", alerts.alert_list, name="alert-list"),
    path("alerts/<int:alert_id>/", alerts.alert_detail, name="alert-detail"),
    path("alerts/<int:alert_id>/acknowledge/", alerts.acknowledge, name="alert-acknowledge"),
    path("alerts/<int:alert_id>/resolve/", alerts.resolve, name="alert-resolve"),
    path("alerts/<int:alert_id>/snooze/", alerts.snooze, name="alert-snooze"),
    path("alerts/<int:alert_id>/note/", alerts.add_note, name="alert-note"),
    path(
        "alerts/<int:alert_id>/test-notification/",
        alerts.test_notification,
        name="alert-test-notification",
    ),
    path("activity/", activity.activity_page, name="activity"),
    path("reports/", reports.report_list, name="report-list"),
    path("reports/<int:report_id>/", reports.report_detail, name="report-detail"),
    # Signed one-click acknowledge links from notifications (no login: the token is the proof)
    path("ack/<str:token>/", alerts.ack_link, name="alert-ack-link"),
    # Heartbeat pings (no login: the UUID is the secret)
    path("ping/<uuid:ping_uuid>", ping.ping_success, name="ping"),
    path("ping/<uuid:ping_uuid>/start", ping.ping_start, name="ping-start"),
    path("ping/<uuid:ping_uuid>/fail", ping.ping_fail, name="ping-fail"),
    path("ping/<uuid:ping_uuid>/<int:exit_code>", ping.ping_exit_code, name="ping-exit-code"),
    # JSON API (API key or staff session)
    path("api/status", status.api_status, name="api-status"),
    path("api/checks/", api.checks, name="api-checks"),
    path("api/activity/", api.activity, name="api-activity"),
    path("api/alerts/", alerts.api_alerts, name="api-alerts"),
    path("api/alerts/<int:alert_id>/ack/", alerts.api_acknowledge, name="api-alert-ack"),
    # Prometheus
    path("metrics", status.metrics, name="metrics"),
]
