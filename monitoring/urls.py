from django.urls import path

from monitoring import api

urlpatterns = [
    path("api/checks/", api.checks, name="api-checks"),
]
