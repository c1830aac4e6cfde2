"""What keeps the dashboard and the checks list fast with hundreds of checks: a fixed number
of queries, uptime read only for the windows a page shows, and compact status strips (the
dashboard fragment is refetched every 15 s). Timings are measured by bench/pages.py, not here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from monitoring.history.rollups import refresh_rollups
from monitoring.history.strip import compact_strip, compact_strips, render_strip, status_strips
from monitoring.history.uptime import Uptime, uptimes
from monitoring.models import Check, CheckRun

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>'


def add_checks(count: int, start: int = 0) -> list[Check]:
    """Checks whose last three hours were critical, then warning, then ok (status changes
    and the hourly rollups the strips read); every seventh has a hostile name."""
    checks = Check.objects.bulk_create(
        Check(
            name=f"{HOSTILE} {i}" if i % 7 == 0 else f"check-{i:03d}",
            kind="http",
            component=f"comp{i % 9}",
            config={"url": "http://127.0.0.1:9/"},
            status="ok",
            last_value=120.5,
            last_message="HTTP 200" if i % 3 else HOSTILE,
            last_run_at=T0,
        )
        for i in range(start, start + count)
    )
    CheckRun.objects.bulk_create(
        CheckRun(check_obj=check, status=status, value=1.0, status_changed=True, created_at=at)
        for check in checks
        for status, at in (
            ("critical", T0 - timedelta(hours=3)),
            ("warning", T0 - timedelta(hours=2)),
            ("ok", T0 - timedelta(hours=1)),
        )
    )
    return checks


def get(client, url: str) -> tuple[str, int]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return response.content.decode(), len(ctx.captured_queries)


def test_dashboard_and_checks_list_keep_their_queries_and_bytes_with_500_checks(staff_client):
    with time_machine.travel(T0, tick=False):
        add_checks(1)
        refresh_rollups(since=T0 - timedelta(hours=4))
        _, fragment_few = get(staff_client, "/dashboard/fragment/")
        _, list_few = get(staff_client, "/checks/")
        add_checks(499, start=1)
        refresh_rollups(since=T0 - timedelta(hours=4))
        fragment, fragment_queries = get(staff_client, "/dashboard/fragment/")
        listing, list_queries = get(staff_client, "/checks/")
    # Uptime, strips and mutes come in one query each (with the checks) whatever their number.
    assert fragment_queries == fragment_few <= 20
    assert list_queries == list_few <= 7
    assert fragment.count('class="check-row ') == 500
    assert listing.count("<tr data-check=") == 500
    # Compact strips: one path per status present (critical, warning, ok, no runs), no rect
    # per hour; the fragment stays under 2 KB a check (it was 4.7 KB with 24 rects).
    assert "<rect" not in fragment and "<rect" not in listing
    assert fragment.count('<path class="strip-cell') == 4 * 500
    assert len(fragment.encode()) / 500 < 2000
    assert len(listing.encode()) / 500 < 2400
    # Every value escaped, in the rows built by the tags.
    assert "<script>" not in fragment and "<script>" not in listing
    name = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; "
    assert listing.count(name) == 72 and fragment.count(name) == 2 * 72
    row = re.search(r'<tr data-check="\d+">.*?</tr>', listing, re.S).group(0)
    assert re.findall(r'class="num uptime">([^<]*)<', row) == ["66.66 %", "66.66 %", "66.66 %"]


def test_uptime_reads_only_the_windows_asked_for_in_one_query(django_assert_num_queries):
    checks = add_checks(3)
    CheckRun.objects.create(
        check_obj=checks[0],
        status="critical",
        status_changed=True,
        created_at=T0 - timedelta(days=3),
    )
    ids = [c.pk for c in checks]
    with time_machine.travel(T0, tick=False):
        every = uptimes(ids)
        with django_assert_num_queries(1):
            today = uptimes(ids, windows=["d1"])
        week = uptimes(ids, windows=("d1", "d7"))
        with pytest.raises(ValueError, match="d1, d7, d30"):
            uptimes(ids, windows=["d365"])
    # 3 h known, 1 h critical: the same figure however many windows are read.
    assert today[checks[1].pk] == Uptime(d1=pytest.approx(200 / 3))
    assert every[checks[1].pk].d1 == today[checks[1].pk].d1
    # Critical since 3 days ago until 2 h ago: the 24 h window starts critical (the status
    # before it is read in the same query), the 7 d window knows 3 days.
    assert today[checks[0].pk].d1 == pytest.approx(100 * 2 / 24)
    assert week[checks[0].pk] == Uptime(
        d1=pytest.approx(100 * 2 / 24), d7=pytest.approx(100 * 2 / 72)
    )
    assert week[checks[0].pk].d7 == every[checks[0].pk].d7


def test_compact_strip_names_each_status_hours_and_their_runs():
    steady, empty = add_checks(2)
    now = T0 + timedelta(minutes=10)
    CheckRun.objects.bulk_create(
        CheckRun(check_obj=steady, status=status, value=1.0, created_at=T0 - timedelta(hours=h))
        for h, status in ((5, "ok"), (5.5, "ok"), (4, "critical"), (4.2, "ok"))
    )
    CheckRun.objects.filter(check_obj=empty).delete()
    with time_machine.travel(now, tick=False):
        refresh_rollups(since=T0 - timedelta(hours=7))
        cells = status_strips([steady, empty])
        drawn = compact_strips([steady.pk, empty.pk])
    svg = str(drawn[steady.pk])
    # The same drawing from the rows as from the cells the check page reads.
    assert svg == str(compact_strip(cells[steady.pk]))
    titles = re.findall(r"<title>([^<]*)</title>", svg)
    # 04:00 and 04:30 ok; 05:18 ok and 05:30 critical; 06:30 critical, 07:30 warning, 08:30 ok.
    assert titles == [
        "Status over the last 24 hours: 2 hours critical, 1 hour warning, 2 hours ok, "
        "19 hours no data",
        "critical, 2 hours (05:00–07:00 UTC): 2 of 3 runs failed",
        "warning, 1 hour (07:00–08:00 UTC): 1 of 1 run failed",
        "ok, 2 hours (04:00–05:00, 08:00–09:00 UTC): 3 runs, none failed",
        "no runs, 19 hours (10:00–04:00, 09:00–10:00 UTC)",
    ]
    assert svg.count("<path") == 4 and "<rect" not in svg
    assert 'role="img"' in svg and f'aria-label="{titles[0]}"' in svg
    assert "style=" not in svg and "<script" not in svg
    assert 'class="strip-cell strip-critical"' in svg and 'class="strip-cell strip-none"' in svg
    # About a quarter of the per-hour drawing the check page keeps.
    assert len(svg) * 3 < len(str(render_strip(cells[steady.pk])))
    assert "all 24 hours" in str(drawn[empty.pk]) and str(drawn[empty.pk]).count("<path") == 1
