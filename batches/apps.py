from django.apps import AppConfig


class BatchesConfig(AppConfig):
    name = "batches"
    verbose_name = "Batch operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: these modules use the models, which Django loads
        # only once every app's config is created.
        from batches import activity, kinds, metrics, operations, pages, retention  # noqa: F401 - registers the kind and operations
        from batches.executor import enqueue_work
        from batches.models import on_work_queued
        from opsconsole.registries import (
            PeriodicJob,
            register_activity_source,
            register_collector,
            register_job,
        )

        register_job(
            PeriodicJob(
                name="batches-recover",
                func="batches.executor.recover_task",
                minutes=1,
                command="batches recover",
                description="Release expired item leases and re-queue batches without a worker",
            )
        )
        register_activity_source("batches", metrics.activity, events=activity.finished_events)
        register_collector("batches", metrics.collect_metrics)
        pages.register_panels()
        retention.register_rules()
        on_work_queued(enqueue_work)
