"""Saving a check from the admin writes its configuration only: a run recorded or a runner's
lease taken while the form was being handled survives the save."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.utils import timezone

from monitoring.kinds import Observation
from monitoring.models import Check

pytestmark = pytest.mark.django_db


def make_check() -> Check:
    return Check.objects.create(
        name="api",
        kind="http",
        config={"url": "http://127.0.0.1:9/health"},
        interval_seconds=60,
        status="ok",
    )


def form_data(check: Check, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": check.name,
        "kind": check.kind,
        "component": check.component,
        "description": check.description,
        "enabled": "on",
        "config": json.dumps(check.config),
        "interval_seconds": check.interval_seconds,
        "timeout_seconds": check.timeout_seconds,
        "warn": "",
        "crit": "",
        "direction": "",
        "debounce": check.debounce,
        "baseline": "null",
        "startup_grace_seconds": "",
        "depends_on": "",
    }
    data.update(changes)
    return data


def test_a_run_and_a_lease_taken_while_the_form_is_handled_survive_the_save(staff_user):
    """As the admin's change view does it (load, validate, save), with a run recorded and a
    slot claimed by another process in between."""
    check = make_check()
    model_admin = admin.site._registry[Check]
    request = RequestFactory().post(f"/admin/monitoring/check/{check.pk}/change/")
    request.user = staff_user
    loaded = model_admin.get_object(request, str(check.pk))
    form_class = model_admin.get_form(request, loaded, change=True)
    form = form_class(
        form_data(loaded, description="edited", interval_seconds="30"), instance=loaded
    )
    assert form.is_valid(), form.errors

    # Meanwhile: the check fails, and a runner claims its next slot.
    other = Check.objects.get(pk=check.pk)
    other.record(Observation(status="critical", message="down"), duration_ms=5)
    now = timezone.now()
    claimed = Check.claim_due(
        now + timedelta(hours=1), limit=10, owner="runner-a", lease_for=lambda checks: 30
    )
    assert [c.pk for c in claimed] == [check.pk]
    before = Check.objects.get(pk=check.pk)

    model_admin.save_model(request, form.save(commit=False), form, change=True)

    after = Check.objects.get(pk=check.pk)
    assert after.description == "edited" and after.interval_seconds == 30
    assert after.updated_at > before.updated_at
    for name in (
        "status",
        "last_message",
        "last_run_at",
        "status_changed_at",
        "streak_status",
        "streak_count",
        "state",
        "has_open_alert",
        "next_run_at",
        "lease_owner",
        "lease_expires_at",
        "lease_slot_at",
    ):
        assert getattr(after, name) == getattr(before, name), name
    assert after.status == "critical" and after.has_open_alert and after.lease_owner == "runner-a"


def test_the_admin_change_form_saves_the_configuration(staff_client):
    check = make_check()
    response = staff_client.post(
        f"/admin/monitoring/check/{check.pk}/change/",
        form_data(check, name="api-renamed", component="edge", enabled=""),
    )
    assert response.status_code == 302, response.content[:2000]
    check.refresh_from_db()
    assert (check.name, check.component, check.enabled) == ("api-renamed", "edge", False)
    assert check.status == "ok", "the runtime state is as it was"


def test_a_new_check_from_the_admin_is_saved_whole(staff_client):
    response = staff_client.post(
        "/admin/monitoring/check/add/", form_data(make_check(), name="new-one")
    )
    assert response.status_code == 302, response.content[:2000]
    created = Check.objects.get(name="new-one")
    assert created.status == "unknown" and created.ping_uuid is not None
