from django.urls import path

from monitoring.pages import activity, checks, reports

urlpatterns = [
    path("checks/", checks.check_list, name="check-list"),
    path("checks/<int:check_id>/", checks.check_detail, name="check-detail"),
    path("checks/<int:check_id>/run/", checks.run_now, name="check-run-now"),
    path("checks/<int:check_id>/mute/", checks.mute, name="check-mute"),
    path("activity/", activity.activity_page, name="activity"),
    path("reports/", reports.report_list, name="report-list"),
    path("reports/<int:report_id>/", reports.report_detail, name="report-detail"),
]
