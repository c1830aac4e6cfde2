"""Durable Prometheus counters: events counted in the database, read back by the collectors.

A ``_total`` on /metrics must never go down, or ``rate()`` and ``increase()`` read a reset and
invent a burst of events. Counting rows of the current state cannot promise that: retrying a
batch turns failed items back into pending ones, and housekeeping deletes old batches and
alerts. So the places where an event happens call ``count_events`` (or ``observe`` for a
histogram) in the transaction that records it, and the collectors read the ``EventCounter``
rows, which only grow and which nothing deletes.

Each call is one ``INSERT … ON CONFLICT DO UPDATE SET value = value + excluded.value`` over the
rows sorted by series, so two transactions touching the same series lock them in the same
order and never deadlock; on PostgreSQL a series row is locked until the caller commits, which
is short for the places that count.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from opsconsole.models import EventCounter

Labels = Mapping[str, str]


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    value: float


def labels_key(labels: Labels) -> str:
    """The stored form of a label set: canonical JSON, so one set is always one row. Not
    ASCII-escaped: a 100-character channel name in any script stays well inside the column."""
    if not labels:
        return ""
    return json.dumps(
        {str(k): str(v) for k, v in labels.items()}, sort_keys=True, ensure_ascii=False
    )


def count_events(events: Iterable[tuple[str, Labels, float]]) -> None:
    """Adds ``amount`` to each ``(sample name, labels, amount)``; zero amounts are skipped.

    Raises ValueError, and writes nothing, for a negative or non-finite amount: a counter that
    could go down would be a gauge."""
    totals: dict[tuple[str, str], float] = {}
    for name, labels, amount in events:
        if not isinstance(amount, int | float) or not math.isfinite(amount) or amount < 0:
            raise ValueError(f"counter {name}: amount must be a finite number >= 0, not {amount!r}")
        if amount:
            key = (name, labels_key(labels))
            totals[key] = totals.get(key, 0) + amount
    if not totals:
        return
    table = connection.ops.quote_name(EventCounter._meta.db_table)
    rows = sorted(totals.items())
    values = ", ".join(["(%s, %s, %s, %s)"] * len(rows))
    now = timezone.now()
    params: list[object] = []
    for (name, key), amount in rows:
        params += [name, key, float(amount), now]
    # Same statement on SQLite (>= 3.24) and PostgreSQL: one row per series, added to in place.
    sql = (
        f"INSERT INTO {table} (name, labels, value, updated_at) VALUES {values} "
        f"ON CONFLICT (name, labels) DO UPDATE SET value = {table}.value + excluded.value, "
        "updated_at = excluded.updated_at"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def count_event(name: str, amount: float = 1, **labels: str) -> None:
    count_events([(name, labels, amount)])


def histogram_events(
    name: str, values: Iterable[float], buckets: Sequence[float], labels: Labels | None = None
) -> list[tuple[str, Labels, float]]:
    """The counter increments of observing ``values`` in histogram ``name`` (cumulative
    ``_bucket`` series with ``le``, ``_count`` and ``_sum``), for ``count_events``."""
    labels = dict(labels or {})
    events: list[tuple[str, Labels, float]] = []
    for value in values:
        value = max(float(value), 0.0)  # a clock step backwards is not a negative duration
        for bound in buckets:
            if value <= bound:
                events.append((f"{name}_bucket", {**labels, "le": _le(bound)}, 1))
        events.append((f"{name}_bucket", {**labels, "le": "+Inf"}, 1))
        events.append((f"{name}_count", labels, 1))
        events.append((f"{name}_sum", labels, value))
    return events


def observe(name: str, value: float, buckets: Sequence[float], **labels: str) -> None:
    count_events(histogram_events(name, [value], buckets, labels))


def _le(bound: float) -> str:
    # prometheus_client's own formatting of bucket bounds ("1.0", "300.0").
    return str(float(bound))


def read_counters(*names: str) -> dict[str, list[Series]]:
    """Every stored series of the given sample names, sorted by labels."""
    found: dict[str, list[Series]] = {name: [] for name in names}
    rows = EventCounter.objects.filter(name__in=names).order_by("name", "labels")
    for name, key, value in rows.values_list("name", "labels", "value"):
        found[name].append(Series(json.loads(key) if key else {}, value))
    return found


def read_histogram(
    name: str, buckets: Sequence[float]
) -> tuple[list[tuple[str, float]], float, float]:
    """One unlabelled histogram as ``(buckets, sum, count)`` for ``HistogramMetricFamily``;
    zeros before the first observation, so the series exists from the start."""
    stored = read_counters(f"{name}_bucket", f"{name}_sum", f"{name}_count")
    by_le = {s.labels.get("le"): s.value for s in stored[f"{name}_bucket"] if len(s.labels) == 1}
    points = [(_le(b), by_le.get(_le(b), 0.0)) for b in buckets]
    points.append(("+Inf", by_le.get("+Inf", 0.0)))
    total = sum(s.value for s in stored[f"{name}_sum"] if not s.labels)
    count = sum(s.value for s in stored[f"{name}_count"] if not s.labels)
    return points, total, count
