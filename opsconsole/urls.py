"""The root URLconf: each app's one urls module, included once."""

from django.contrib import admin
from django.urls import include, path

from opsconsole import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("", include("monitoring.web.urls")),
    path("", include("backlog.urls")),
    path("", include("batches.urls")),
]
