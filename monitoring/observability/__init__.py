"""Metrics, health findings, housekeeping and the health report."""


def setup() -> None:
    """Called from MonitoringConfig.ready: metric collectors and schedules."""
