"""Kinds that watch data and jobs (freshness, sql_value, queue, heartbeat)."""
