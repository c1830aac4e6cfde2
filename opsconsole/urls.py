from django.contrib import admin
from django.urls import include, path

from opsconsole import views

# Each area keeps its routes in its own module; the order only matters for "/".
urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("opsconsole.status_urls")),
    path("", include("opsconsole.page_urls")),
    path("", include("monitoring.urls")),
    path("", include("monitoring.alert_urls")),
    path("", include("monitoring.ping_urls")),
    path("", include("monitoring.activity_urls")),
    path("", include("monitoring.page_urls")),
    path("", include("backlog.urls")),
    path("", include("backlog.page_urls")),
    path("", include("batches.urls")),
    path("", include("batches.page_urls")),
]
