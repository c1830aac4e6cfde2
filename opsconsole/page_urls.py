from django.urls import path

from opsconsole import dashboard

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("dashboard/fragment/", dashboard.dashboard_fragment, name="dashboard-fragment"),
    path(
        "dashboard/alerts/<int:alert_id>/acknowledge/",
        dashboard.acknowledge_alert,
        name="dashboard-acknowledge",
    ),
]
