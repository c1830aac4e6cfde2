from django.contrib import admin
from django.urls import include, path

from opsconsole import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("opsconsole.status_urls")),
    path("", include("monitoring.urls")),
    path("", include("monitoring.alert_urls")),
    path("", include("monitoring.ping_urls")),
    path("", include("monitoring.page_urls")),
    path("", include("backlog.urls")),
    path("", include("batches.urls")),
]
