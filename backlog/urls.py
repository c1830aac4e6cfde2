from django.urls import path

from backlog import api

urlpatterns = [
    path("api/backlog/", api.add_entries, name="api-backlog"),
    path("api/backlog/stats/", api.backlog_stats, name="api-backlog-stats"),
]
