from django.urls import path

from batches import api

urlpatterns = [
    path("api/batches/", api.collection, name="api-batches"),
    path("api/batches/health/", api.health, name="api-batches-health"),
    path("api/batches/creator/<str:creator>/", api.by_creator, name="api-batches-by-creator"),
    path("api/batches/<str:batch_id>/", api.detail, name="api-batch"),
    path("api/batches/<str:batch_id>/retry/", api.retry, name="api-batch-retry"),
    path("api/batches/<str:batch_id>/cancel/", api.cancel, name="api-batch-cancel"),
]
