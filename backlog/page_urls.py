from django.urls import path

from backlog import pages

urlpatterns = [
    path("backlog/", pages.backlog_page, name="backlog"),
    path("backlog/retry-failed/", pages.retry_failed, name="backlog-retry-failed"),
]
