from django.urls import path

from opsconsole import status

urlpatterns = [
    path("metrics", status.metrics, name="metrics"),
    path("api/status", status.api_status, name="api-status"),
]
