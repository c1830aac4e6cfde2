"""Alerts, escalation and notifications."""


def setup() -> None:
    """Called from MonitoringConfig.ready: hooks, check-file sections, schedules."""
