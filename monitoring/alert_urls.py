from django.urls import path

from monitoring.alerting import views

urlpatterns = [
    path("alerts/", views.alert_list, name="alert-list"),
    path("alerts/<int:alert_id>/", views.alert_detail, name="alert-detail"),
    path("alerts/<int:alert_id>/acknowledge/", views.acknowledge, name="alert-acknowledge"),
    path("alerts/<int:alert_id>/resolve/", views.resolve, name="alert-resolve"),
    path("alerts/<int:alert_id>/snooze/", views.snooze, name="alert-snooze"),
    path("alerts/<int:alert_id>/note/", views.add_note, name="alert-note"),
    path("ack/<str:token>/", views.ack_link, name="alert-ack-link"),
    path("api/alerts/", views.api_alerts, name="api-alerts"),
    path("api/alerts/<int:alert_id>/ack/", views.api_acknowledge, name="api-alert-ack"),
]
