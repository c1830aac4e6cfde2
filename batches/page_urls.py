from django.urls import path

from batches import pages

urlpatterns = [
    path("batches/", pages.batch_list, name="batch-list"),
    path("batches/<uuid:batch_id>/", pages.batch_detail, name="batch-detail"),
    path("batches/<uuid:batch_id>/progress/", pages.batch_progress_fragment, name="batch-progress"),
    path("batches/<uuid:batch_id>/retry/", pages.retry_failed, name="batch-retry"),
    path("batches/<uuid:batch_id>/cancel/", pages.cancel, name="batch-cancel"),
]
