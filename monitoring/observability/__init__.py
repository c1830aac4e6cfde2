"""Metrics, health findings, housekeeping and the health report."""


def setup() -> None:
    """Called from MonitoringConfig.ready: metric collectors, task logging and schedules."""
    from monitoring.metrics_registry import register_collector
    from monitoring.observability import collectors, tasklog
    from opsconsole.logging import install_record_factory
    from opsconsole.schedules import PeriodicJob, register_job

    register_collector("checks", collectors.check_metrics)
    register_collector("queue", collectors.queue_metrics)
    register_collector("redis", collectors.redis_metrics)
    install_record_factory()
    tasklog.connect()
    register_job(
        PeriodicJob(
            name="housekeeping",
            func="opsconsole.housekeeping.scheduled_housekeeping",
            minutes=24 * 60,
            command="housekeeping",
            description="Delete data past its retention (runs, alerts, backlog, batches, tasks)",
        )
    )
    register_job(
        PeriodicJob(
            name="opsreport",
            func="monitoring.observability.report.scheduled_report",
            minutes=30,
            command="opsreport",
            description="Save the 30-minute health report (mailed when OPSREPORT_EMAIL is on)",
        )
    )
