"""Readings (overall state, queue, scheduler, Redis), the /metrics snapshot and collectors,
``metrics health``, the health report, Prometheus rules and task logging."""
