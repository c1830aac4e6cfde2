from django.apps import AppConfig


class BatchesConfig(AppConfig):
    name = "batches"
    verbose_name = "Batch operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from batches import monitoring_hooks, operations  # noqa: F401 - registers the kind and operations
        from monitoring.activity import register_activity_source
        from monitoring.metrics_registry import register_collector
        from opsconsole.schedules import PeriodicJob, register_job

        register_job(
            PeriodicJob(
                name="batches-recover",
                func="batches.executor.recover_task",
                minutes=1,
                command="batches recover",
                description="Release expired item leases and re-queue batches without a worker",
            )
        )
        register_activity_source("batches", monitoring_hooks.activity)
        register_collector("batches", monitoring_hooks.collect_metrics)
