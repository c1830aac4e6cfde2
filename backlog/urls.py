from django.urls import path

from backlog import api, pages

urlpatterns = [
    path("backlog/", pages.backlog_page, name="backlog"),
    path("backlog/retry-failed/", pages.retry_failed, name="backlog-retry-failed"),
    path("api/backlog/", api.add_entries, name="api-backlog"),
    path("api/backlog/stats/", api.backlog_stats, name="api-backlog-stats"),
]
