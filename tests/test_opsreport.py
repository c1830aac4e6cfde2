"""The 30-minute health report: seed 004 sections with real values, saved, mailed, and shown
as a page (sections with badges) and as text (for mail and download)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from io import StringIO

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from monitoring.models import Alert, Check, CheckRun, Report
from monitoring.observability.report import build_report

pytestmark = pytest.mark.django_db

SECTIONS = (
    "OPS CONSOLE HEALTH REPORT",
    "📊 PROCESS STATUS",
    "🗄️  DATABASE HEALTH",
    "📈 RECENT DATA",
    "💾 SYSTEM RESOURCES",
)
HOSTILE = '<img src=x onerror="alert(1)">'


def seed_checks() -> None:
    now = timezone.now()
    Check.objects.create(
        name="events-last-hour",
        kind="sql_value",
        config={},
        status="warning",
        last_value=42,
        last_message="42 events",
        last_run_at=now,
    )
    Check.objects.create(
        name="orders-fresh",
        kind="freshness",
        config={},
        status="ok",
        last_value=300,
        last_message="newest row 5m old",
        last_run_at=now,
    )
    aggregator = Check.objects.create(
        name="aggregator",
        kind="process",
        config={"cmdline": "aggregator"},
        status="critical",
        last_message="no matching process running",
        last_run_at=now,
    )
    CheckRun.objects.create(
        check_obj=aggregator,
        status="critical",
        details={"count": 0, "rss_mb": 0, "cpu_pct": 0, "restarts_last_hour": 2},
    )
    worker = Check.objects.create(
        name="worker", kind="process", config={"cmdline": "worker"}, status="ok", last_run_at=now
    )
    CheckRun.objects.create(
        check_obj=worker,
        status="ok",
        details={
            "count": 1,
            "rss_mb": 1024.4,
            "cpu_pct": 4.6,
            "restarts_last_hour": 3,
            "uptime_seconds": 2 * 86400 + 5 * 3600 + 60,
        },
    )


def test_opsreport_prints_the_seed_sections_with_real_values_and_saves_a_report():
    seed_checks()
    out = StringIO()
    call_command("opsreport", stdout=out)
    text = out.getvalue()
    for section in SECTIONS:
        assert section in text
    assert re.search(r"events-last-hour\s+sql_value\s+42\s", text) and "orders-fresh" in text
    assert "❌ aggregator\n   Status: offline | Uptime: — | Restarts: 2\n" in text
    assert "   no matching process running\n" in text
    assert (
        "✅ worker\n   Status: online | Uptime: 2d 5h | Restarts: 3\n   Memory: 1024MB | CPU: 5%\n"
    ) in text
    assert "✅ Connected" in text
    assert "CPU Load (1/5/15 min):" in text and "Memory:" in text
    report = Report.objects.get()
    assert report.text in text and f"Saved report #{report.pk}" in text
    assert report.overall_status == "critical"
    kinds = [section["kind"] for section in report.sections]
    assert kinds == ["processes", "database", "rows", "alerts", "resources"]
    assert report.sections[2]["rows"][0][0] == "events-last-hour"


def test_active_alerts_show_readable_times_without_microseconds():
    with time_machine.travel(datetime(2025, 11, 15, 4, 45, 30, 123456, tzinfo=UTC), tick=False):
        Alert.objects.create(dedup_key="k", title="API down", severity="critical", status="open")
        out = StringIO()
        call_command("opsreport", stdout=out)
    text = out.getvalue()
    assert "🚨 ACTIVE ALERTS (1)" in text
    assert "❌ [CRITICAL] API down (open, since 2025-11-15 04:45:30 UTC)" in text
    assert "Timestamp: 2025-11-15T04:45:30.123Z" in text
    assert ".123456" not in text


def test_opsreport_without_alerts_says_so():
    out = StringIO()
    call_command("opsreport", stdout=out)
    assert "✅ No alerts" in out.getvalue()


def test_report_title_names_the_installation(settings):
    settings.REPORT_TITLE = "OFF-CHAIN HEALTH REPORT"
    report = build_report()
    assert report.text.splitlines()[1] == "OFF-CHAIN HEALTH REPORT"
    assert report.title.startswith("Off-Chain Health Report ")


def test_opsreport_email_goes_to_staff(django_user_model):
    django_user_model.objects.create_user("ops", email="ops@example.com", is_staff=True)
    django_user_model.objects.create_user("viewer", email="viewer@example.com", is_staff=False)
    out = StringIO()
    call_command("opsreport", "--email", stdout=out)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@example.com"]
    assert "OPS CONSOLE HEALTH REPORT" in mail.outbox[0].body
    assert "Mailed to 1 staff users." in out.getvalue()


# --- the page --------------------------------------------------------------------------------


def test_report_page_shows_sections_with_css_badges_and_tables(staff_client):
    seed_checks()
    Alert.objects.create(dedup_key="k", title="API down", severity="critical", status="open")
    report = build_report()
    response = staff_client.get(f"/reports/{report.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    for title in ("PROCESS STATUS", "DATABASE HEALTH", "RECENT DATA", "SYSTEM RESOURCES"):
        assert f"</span> {title}</h2>" in html
    assert "Active alerts (1)</h2>" in html
    # Badges are CSS classes with words, no emoji to draw.
    assert '<span class="badge critical">offline</span>' in html
    assert '<span class="badge ok">online</span>' in html
    assert '<span class="badge warning">warning</span>' in html
    assert '<span class="badge critical">critical</span> <a href="/alerts/' in html
    for emoji in ("✅", "❌", "⚠", "📊", "🗄", "📈", "💾", "🚨"):
        assert emoji not in html
    # Process and rows sections are tables that stack on a phone.
    assert '<td data-label="Memory" class="num">1024MB</td>' in html
    assert '<td data-label="Check">events-last-hour</td>' in html
    assert f'href="/checks/{Check.objects.get(name="worker").pk}/"' in html
    assert f'href="/alerts/{Alert.objects.get().pk}/"' in html
    assert "style=" not in html and "<script>" not in html
    assert 'href="?format=text&amp;download=1"' in html


def test_report_page_escapes_values_from_monitored_systems(staff_client):
    report = Report.objects.create(
        title=f"report {HOSTILE}",
        text="x",
        sections=[
            {
                "kind": "rows",
                "title": f"ROWS {HOSTILE}",
                "status": '"><script>alert(1)</script>',
                "columns": [HOSTILE],
                "rows": [[HOSTILE, True, None]],
                "error": "",
            },
            {
                "kind": "database",
                "title": "DATABASE HEALTH",
                "status": "ok",
                "lines": [{"text": HOSTILE, "status": "ok"}],
                "figures": [{"label": HOSTILE, "text": HOSTILE, "status": "nonsense"}],
            },
            {
                "kind": "alerts",
                "title": "ACTIVE ALERTS",
                "status": "critical",
                "alerts": [
                    {"id": "1/../x", "severity": "critical", "status": "open", "title": HOSTILE}
                ],
                "failing": "",
            },
            "not a section",
        ],
    )
    response = staff_client.get(f"/reports/{report.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert HOSTILE not in html and "<script>alert" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    # A status that is not one the console writes becomes "unknown", never a class of its own.
    assert '<span class="badge unknown">unknown</span> ROWS' in html
    assert '<span class="badge ok">yes</span>' in html
    assert 'href="/alerts/1' not in html


def test_report_text_for_mail_and_download(staff_client):
    report = build_report()
    inline = staff_client.get(f"/reports/{report.pk}/?format=text")
    assert inline.status_code == 200
    assert inline["Content-Type"] == "text/plain; charset=utf-8"
    assert inline.content.decode() == report.text
    assert inline["Content-Disposition"].startswith("inline; ")
    download = staff_client.get(f"/reports/{report.pk}/?format=text&download=1")
    assert download["Content-Disposition"] == (
        f'attachment; filename="health-report-{report.pk}-{report.created_at:%Y%m%d-%H%M}.txt"'
    )
    bad = staff_client.get(f"/reports/{report.pk}/?format=pdf")
    assert bad.status_code == 400 and b"format: must be one of html, text" in bad.content


def test_report_saved_before_sections_shows_its_text_and_the_list_links_downloads(staff_client):
    old = Report.objects.create(title="Health report", text=f"OLD REPORT {HOSTILE}")
    page = staff_client.get(f"/reports/{old.pk}/").content.decode()
    assert '<pre id="report-text">OLD REPORT &lt;img' in page
    listing = staff_client.get("/reports/").content.decode()
    assert f'href="/reports/{old.pk}/?format=text&amp;download=1"' in listing


def test_report_pages_are_for_staff_only(client, plain_user_client):
    report = Report.objects.create(title="r", text="secret text")
    for who in (client, plain_user_client):
        response = who.get(f"/reports/{report.pk}/?format=text")
        assert response.status_code in (302, 403)
        assert b"secret text" not in response.content


def test_a_process_blocks_badge_follows_its_status_word_not_the_debounced_check_status():
    """A process check still "ok" (its debounce not yet spent) whose latest run found no
    process is shown "offline" in red, never a red word on a green badge."""
    check = Check.objects.create(
        name="worker", kind="process", config={"name": "worker"}, status="ok", debounce=3
    )
    CheckRun.objects.create(check_obj=check, status="critical", details={"count": 0})
    report = build_report()
    block = next(s for s in report.sections if s["kind"] == "processes")
    entry = next(e for e in block["entries"] if e["name"] == "worker")
    assert (entry["state"], entry["status"]) == ("offline", "critical")
    assert "❌ worker" in report.text
