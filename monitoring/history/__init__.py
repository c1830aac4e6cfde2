"""Check history that stays fast at millions of runs a day.

- ``rollups``: runs summarised per check and 5-minute / 1-hour bucket (``CheckRollup``),
  refreshed every minute by an idempotent job, never on the record path;
- ``uptime``: availability over 24 h, 7 d and 30 d from status changes;
- ``strip``: the last 24 hours as a row of coloured cells (inline SVG).
"""
