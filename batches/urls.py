from django.urls import path

from batches import api, pages

urlpatterns = [
    path("batches/", pages.batch_list, name="batch-list"),
    path("batches/<uuid:batch_id>/", pages.batch_detail, name="batch-detail"),
    path("batches/<uuid:batch_id>/progress/", pages.batch_progress_fragment, name="batch-progress"),
    path("batches/<uuid:batch_id>/retry/", pages.retry_failed, name="batch-retry"),
    path("batches/<uuid:batch_id>/cancel/", pages.cancel, name="batch-cancel"),
    path("api/batches/", api.collection, name="api-batches"),
    # Before the <str:name> route below, which would take "health" as a batch id; without the
    # slash too, as the operations document spells it (APPEND_SLASH would answer a redirect).
    path("api/batches/health/", api.health, name="api-batches-health"),
    path("api/batches/health", api.health),
    path("api/batches/creator/<str:creator>/", api.by_creator, name="api-batches-by-creator"),
    # GET: the batch with this id; POST: a new batch of the operation with this name.
    path("api/batches/<str:name>/", api.batch_or_operation, name="api-batch"),
    # The document posts to /api/batches/<operation> without the slash; a redirect would lose
    # the body.
    path("api/batches/<str:name>", api.batch_or_operation),
    path("api/batches/<str:batch_id>/retry/", api.retry, name="api-batch-retry"),
    path("api/batches/<str:batch_id>/cancel/", api.cancel, name="api-batch-cancel"),
]
