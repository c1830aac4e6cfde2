"""The 30-minute health report: seed 004 sections with real values, saved and mailed."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from monitoring.models import Check, Report

pytestmark = pytest.mark.django_db

SECTIONS = (
    "OPS CONSOLE HEALTH REPORT",
    "📊 PROCESS STATUS",
    "🗄️  DATABASE HEALTH",
    "📈 RECENT DATA",
    "💾 SYSTEM RESOURCES",
)


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
    Check.objects.create(
        name="aggregator",
        kind="process",
        config={},
        status="critical",
        last_message="no matching process running",
        last_run_at=now,
    )


def test_opsreport_prints_the_seed_sections_with_real_values_and_saves_a_report():
    seed_checks()
    out = StringIO()
    call_command("opsreport", stdout=out)
    text = out.getvalue()
    for section in SECTIONS:
        assert section in text
    assert "events-last-hour" in text and "42" in text and "orders-fresh" in text
    assert "aggregator" in text and "no matching process running" in text
    assert "✅ Connected" in text
    assert "CPU Load (1/5/15 min):" in text and "Memory:" in text
    report = Report.objects.get()
    assert report.text in text and f"Saved report #{report.pk}" in text
    assert report.overall_status == "critical"
    assert report.data["data"][0]["name"] == "events-last-hour"


def test_opsreport_lists_active_alerts():
    from monitoring.models import Alert

    Alert.objects.create(dedup_key="k", title="API down", severity="critical", status="open")
    out = StringIO()
    call_command("opsreport", stdout=out)
    assert "ACTIVE ALERTS (1)" in out.getvalue() and "[CRITICAL] API down" in out.getvalue()


def test_opsreport_without_alerts_says_so():
    out = StringIO()
    call_command("opsreport", stdout=out)
    assert "✅ No alerts" in out.getvalue()


def test_opsreport_email_goes_to_staff(django_user_model):
    django_user_model.objects.create_user("ops", email="ops@example.com", is_staff=True)
    django_user_model.objects.create_user("viewer", email="viewer@example.com", is_staff=False)
    out = StringIO()
    call_command("opsreport", "--email", stdout=out)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@example.com"]
    assert "OPS CONSOLE HEALTH REPORT" in mail.outbox[0].body
    assert "Mailed to 1 staff users." in out.getvalue()
