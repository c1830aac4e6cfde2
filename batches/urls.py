from django.urls import path

from batches import api, pages

urlpatterns = [
    path("batches/", pages.batch_list, name="batch-list"),
    path("batches/<uuid:batch_id>/", pages.batch_detail, name="batch-detail"),
    path("batches/<uuid:batch_id>/progress/", pages.batch_progress_fragment, name="batch-progress"),
    path("batches/<uuid:batch_id>/retry/", pages.retry_failed, name="batch-retry"),
    path("batches/<uuid:batch_id>/cancel/", pages.cancel, name="batch-cancel"),
    path("api/batches/", api.collection, name="api-batches"),
    path("api/batches/health/", api.health, name="api-batches-health"),
    path("api/batches/creator/<str:creator>/", api.by_creator, name="api-batches-by-creator"),
    path("api/batches/<str:batch_id>/", api.detail, name="api-batch"),
    path("api/batches/<str:batch_id>/retry/", api.retry, name="api-batch-retry"),
    path("api/batches/<str:batch_id>/cancel/", api.cancel, name="api-batch-cancel"),
]
