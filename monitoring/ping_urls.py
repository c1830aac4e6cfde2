"""Heartbeat ping routes (no login; the UUID is the secret)."""

from django.urls import path

from monitoring import heartbeat

urlpatterns = [
    path("ping/<uuid:ping_uuid>", heartbeat.ping_success, name="ping"),
    path("ping/<uuid:ping_uuid>/start", heartbeat.ping_start, name="ping-start"),
    path("ping/<uuid:ping_uuid>/fail", heartbeat.ping_fail, name="ping-fail"),
    path("ping/<uuid:ping_uuid>/<int:exit_code>", heartbeat.ping_exit_code, name="ping-exit-code"),
]
