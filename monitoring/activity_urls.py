from django.urls import path

from monitoring import activity_api

urlpatterns = [
    path("api/activity/", activity_api.activity, name="api-activity"),
]
