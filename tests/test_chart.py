"""Charts that show the data: the value axis fits the values (not the thresholds), units and
precision on every label, min / mean / max per bucket from raw runs (1 h, 24 h) or rollups
(7 d, 30 d), failed runs and status changes marked, a title and summary for screen readers."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from monitoring.history.rollups import refresh_rollups
from monitoring.models import Check, CheckRun
from monitoring.web.chart import CHART_RANGES, check_chart, format_value, nice_axis

NS = {"svg": "http://www.w3.org/2000/svg"}
NOW = datetime(2026, 3, 31, 12, 0, 30, tzinfo=UTC)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def ys(points: str) -> list[float]:
    return [float(pair.split(",")[1]) for pair in points.split()]


def value_plot(root: ET.Element) -> tuple[float, float]:
    """(top, bottom) of the value panel's plot area: the first frame."""
    frame = root.find("svg:rect[@class='frame plot']", NS)
    top = float(frame.get("y"))
    return top, top + float(frame.get("height"))


@pytest.fixture
def latency_check(db) -> Check:
    check = Check.objects.create(
        name="api-latency", kind="http", config={"url": "http://127.0.0.1:9/"}, crit=5000
    )
    runs = [
        CheckRun(
            check_obj=check,
            status="critical" if i == 100 else "ok",
            value=150.0 + (i * 5) % 21,  # 150 ... 170 ms
            duration_ms=150.0 + (i * 5) % 21,
            created_at=NOW - timedelta(minutes=i),
            status_changed=i in (100, 99),
        )
        for i in range(1380)  # 23 hours: all inside the 24 h chart
    ]
    CheckRun.objects.bulk_create(runs)
    return check


@pytest.mark.django_db
@pytest.mark.parametrize("range_key", ["24h", "30d"])
def test_values_of_150_to_170_ms_use_most_of_the_plot_whatever_the_crit_threshold(
    latency_check, range_key
):
    if range_key == "30d":
        refresh_rollups(now=NOW, since=NOW - timedelta(days=1, hours=1))
    svg = str(check_chart(latency_check, range_key, now=NOW))
    root = parse(svg)
    top, bottom = value_plot(root)
    band = root.find("svg:polygon[@class='band value']", NS)
    mean = root.find("svg:polyline[@class='series value']", NS)
    data = ys(band.get("points")) + ys(mean.get("points"))
    assert (max(data) - min(data)) >= 0.5 * (bottom - top)
    # crit is far off the axis: marked at the top edge with its unit, not drawn as a line
    assert "crit 5,000 ms ↑" in svg
    assert root.find("svg:line[@class='threshold crit']", NS) is None
    ticks = [t.text for t in root.findall("svg:text[@class='tick']", NS)]
    assert "150 ms" in ticks and "170 ms" in ticks


@pytest.mark.django_db
def test_chart_marks_failed_runs_and_status_changes_and_reads_well_to_a_screen_reader(
    latency_check,
):
    svg = str(check_chart(latency_check, "24h", now=NOW))
    root = parse(svg)
    assert root.get("role") == "img"
    title = root.find("svg:title", NS).text
    desc = root.find("svg:desc", NS).text
    assert (
        root.get("aria-labelledby")
        == f"chart-{latency_check.pk}-24h-title chart-{latency_check.pk}-24h-desc"
    )
    assert "api-latency" in title and "last 24 hours" in title
    assert (
        "1,380 runs in 144 buckets of 10 min" in desc
        and "min 150 ms" in desc
        and "max 170 ms" in desc
    )
    assert "1 failed run" in desc and "2 status changes" in desc
    assert "crit 5,000 ms above the chart" in desc
    failed = root.findall("svg:rect[@class='mark failed']", NS)
    assert len(failed) == 1 and "1 of 10 runs failed" in failed[0].find("svg:title", NS).text
    changes = [c.find("svg:title", NS).text for c in root.findall("svg:path", NS)]
    assert changes == [
        "2026-03-31 10:20 UTC: became critical",
        "2026-03-31 10:21 UTC: became ok",
    ]
    assert "style=" not in svg and "<script" not in svg


@pytest.mark.django_db
def test_every_range_renders_and_an_unknown_range_is_the_default(latency_check):
    refresh_rollups(now=NOW, since=NOW - timedelta(days=1, hours=1))
    for key in CHART_RANGES:
        root = parse(str(check_chart(latency_check, key, now=NOW)))
        assert root.find("svg:title", NS) is not None, key
    assert f'id="chart-{latency_check.pk}-24h-title"' in str(
        check_chart(latency_check, "<script>", now=NOW)
    )
    # 30 days read the hourly rollups: raw runs gone, the chart stays
    CheckRun.objects.filter(check_obj=latency_check).delete()
    svg = str(check_chart(latency_check, "30d", now=NOW))
    assert "1,380 runs in 180 buckets of 4 h" in svg


@pytest.mark.django_db
def test_a_threshold_inside_the_data_is_drawn_as_a_line(db):
    check = Check.objects.create(
        name="disk", kind="http", config={"url": "http://127.0.0.1:9/"}, warn=160, crit=5000
    )
    CheckRun.objects.bulk_create(
        CheckRun(
            check_obj=check,
            status="ok",
            value=150.0 + i % 21,
            created_at=NOW - timedelta(minutes=i),
        )
        for i in range(60)
    )
    root = parse(str(check_chart(check, "1h", now=NOW)))
    line = root.find("svg:line[@class='threshold warn']", NS)
    top, bottom = value_plot(root)
    assert line is not None and top < float(line.get("y1")) < bottom


def test_axis_and_value_formatting(once_per_suite):
    assert nice_axis(150, 170) == (150, 170, 5, 0)
    assert nice_axis(0.12, 0.87)[2:] == (0.2, 1)
    low, high, step, decimals = nice_axis(3, 3)
    assert low < 3 < high
    assert format_value(5000, " ms", 0) == "5,000 ms"
    assert format_value(1234567.891, "", 0) == "1,234,568"
    assert format_value(75.25, " %", 2) == "75.25 %"
    assert format_value(-0.0001, " s", 1) == "0 s"
    assert re.fullmatch(r"[\d,]+", format_value(14_000_000, "", 0))
