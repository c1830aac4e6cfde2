"""Page actions honour Django permissions: a staff user without the change permission of the
model sees the pages read-only and the server refuses the POST (403) without changing anything;
the admin's custom actions follow the same rule."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from backlog.models import BacklogEntry, BacklogStatus
from batches.models import BatchOperation, BatchStatus, ItemStatus
from batches.services import create_batch
from monitoring.kinds import Observation
from monitoring.models import Alert, Check, CheckRun, MaintenanceWindow

VIEW_ALL = [
    "monitoring.view_alert",
    "monitoring.view_check",
    "batches.view_batchoperation",
    "backlog.view_backlogentry",
]


def user_client(django_user_model, name: str, perms: list[str]) -> Client:
    user = django_user_model.objects.create_user(name, password="s3cret-pass", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def readonly(db, django_user_model) -> Client:
    """Staff with the view permissions only, e.g. an auditor."""
    return user_client(django_user_model, "auditor", VIEW_ALL)


@dataclass
class World:
    check: Check
    alert: Alert
    running: BatchOperation
    finished: BatchOperation
    failed_entry: BacklogEntry


@pytest.fixture
def world(db) -> World:
    check = Check.objects.create(
        name="api-health", kind="http", component="api", config={"url": "http://127.0.0.1:9/"}
    )
    check.record(Observation(status="critical", message="HTTP 503 from /health"), duration_ms=35)
    alert = Alert.objects.get(check_obj=check)
    batch_data = {
        "operation": "http",
        "creator": "tests",
        "items": ["a", "b"],
        "payload": {"url": "http://127.0.0.1:9/items/{key}"},
    }
    running = create_batch(batch_data)
    finished = create_batch(batch_data)
    finished.items.update(status=ItemStatus.FAILED, error="HTTP 500")
    BatchOperation.objects.filter(pk=finished.pk).update(
        status=BatchStatus.FAILED, failed_items=2, finished_at=finished.created_at
    )
    failed_entry = BacklogEntry.objects.create(
        source="users", key="42", status=BacklogStatus.FAILED, last_error="boom"
    )
    return World(check, alert, running, finished, failed_entry)


def actions(world: World) -> list[tuple[str, dict]]:
    alert, check = world.alert.pk, world.check.pk
    return [
        (f"/alerts/{alert}/acknowledge/", {}),
        (f"/alerts/{alert}/resolve/", {"message": "fixed"}),
        (f"/alerts/{alert}/snooze/", {"duration": "1h"}),
        (f"/alerts/{alert}/note/", {"text": "restarted the pod"}),
        (f"/alerts/{alert}/acknowledge/", {"next": "/"}),  # the dashboard's button
        (f"/checks/{check}/run/", {}),
        (f"/checks/{check}/mute/", {}),
        (f"/batches/{world.running.pk}/cancel/", {}),
        (f"/batches/{world.finished.pk}/retry/", {}),
        ("/backlog/retry-failed/", {}),
    ]


def snapshot(world: World) -> tuple:
    alert = Alert.objects.get(pk=world.alert.pk)
    return (
        alert.status,
        alert.snoozed_until,
        alert.events.count(),
        CheckRun.objects.filter(check_obj=world.check).count(),
        MaintenanceWindow.objects.count(),
        BatchOperation.objects.get(pk=world.running.pk).status,
        BatchOperation.objects.get(pk=world.finished.pk).status,
        BacklogEntry.objects.get(pk=world.failed_entry.pk).status,
    )


def test_staff_without_change_permissions_get_403_on_every_page_action_and_nothing_changes(
    readonly, world
):
    before = snapshot(world)
    for url, data in actions(world):
        response = readonly.post(url, data)
        assert response.status_code == 403, url
    assert snapshot(world) == before


def test_each_action_needs_its_own_models_change_permission(django_user_model, world):
    alerts_only = user_client(django_user_model, "alerts", VIEW_ALL + ["monitoring.change_alert"])
    assert alerts_only.post(f"/alerts/{world.alert.pk}/acknowledge/").status_code == 302
    assert Alert.objects.get(pk=world.alert.pk).status == "acknowledged"
    assert alerts_only.post(f"/checks/{world.check.pk}/mute/").status_code == 403
    assert alerts_only.post(f"/batches/{world.running.pk}/cancel/").status_code == 403

    checks_only = user_client(django_user_model, "checks", VIEW_ALL + ["monitoring.change_check"])
    assert checks_only.post(f"/checks/{world.check.pk}/mute/").status_code == 302
    assert MaintenanceWindow.objects.filter(check_obj=world.check).count() == 1
    assert checks_only.post(f"/alerts/{world.alert.pk}/resolve/").status_code == 403

    batches_only = user_client(
        django_user_model, "batches", VIEW_ALL + ["batches.change_batchoperation"]
    )
    assert batches_only.post(f"/batches/{world.running.pk}/cancel/").status_code == 302
    assert BatchOperation.objects.get(pk=world.running.pk).status == BatchStatus.CANCELLED
    assert batches_only.post(f"/batches/{world.finished.pk}/retry/").status_code == 302
    assert BatchOperation.objects.get(pk=world.finished.pk).status == BatchStatus.PENDING
    assert batches_only.post("/backlog/retry-failed/").status_code == 403

    backlog_only = user_client(
        django_user_model, "backlog", VIEW_ALL + ["backlog.change_backlogentry"]
    )
    assert backlog_only.post("/backlog/retry-failed/").status_code == 302
    assert BacklogEntry.objects.get(pk=world.failed_entry.pk).status == BacklogStatus.PENDING


def test_anonymous_users_still_go_to_the_login_page_and_non_staff_get_403(
    client, django_user_model, world
):
    url = f"/checks/{world.check.pk}/mute/"
    response = client.post(url)
    assert response.status_code == 302 and "/login" in response["Location"]
    client.force_login(django_user_model.objects.create_user("viewer", password="s3cret-pass"))
    assert client.post(url).status_code == 403
    assert MaintenanceWindow.objects.count() == 0


READ_ONLY_PAGES = [
    # (page, action markers that must be absent, a marker of the page itself)
    (lambda w: f"/alerts/{w.alert.pk}/", ['id="acknowledge"', 'id="resolve"', 'id="snooze"']),
    (lambda w: f"/checks/{w.check.pk}/", ['id="run-now"', 'id="mute"']),
    (lambda w: f"/batches/{w.running.pk}/", ['id="retry-failed"', 'id="cancel-batch"']),
    (lambda w: "/backlog/", ['id="backlog-retry"']),
    (lambda w: "/", ['data-action="acknowledge"']),
    (lambda w: "/dashboard/fragment/", ['data-action="acknowledge"']),
]


@pytest.mark.parametrize(("page", "markers"), READ_ONLY_PAGES)
def test_pages_are_read_only_without_the_permission_and_offer_actions_with_it(
    readonly, staff_client, world, page, markers
):
    url = page(world)
    response = readonly.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    for marker in markers:
        assert marker not in html, (url, marker)
    full = staff_client.get(url).content.decode()  # a superuser has every permission
    for marker in markers:
        assert marker in full, (url, marker)


def test_read_only_pages_say_why_the_buttons_are_missing(readonly, world):
    for url in (f"/alerts/{world.alert.pk}/", f"/checks/{world.check.pk}/"):
        assert 'id="read-only"' in readonly.get(url).content.decode()
    assert 'id="read-only"' in readonly.get(f"/batches/{world.running.pk}/").content.decode()


# --- the admin's custom actions ----------------------------------------------------------------


def admin_action(client: Client, changelist: str, action: str, pk) -> None:
    client.post(changelist, {"action": action, "_selected_action": [str(pk)], "index": 0})


@pytest.mark.parametrize(
    ("changelist", "action"),
    [
        ("/admin/monitoring/alert/", "acknowledge_selected"),
        ("/admin/monitoring/alert/", "resolve_selected"),
        ("/admin/monitoring/check/", "run_now"),
        ("/admin/monitoring/check/", "disable"),
        ("/admin/batches/batchoperation/", "cancel_batches"),
        ("/admin/batches/batchoperation/", "retry_failed_items"),
        ("/admin/backlog/backlogentry/", "requeue"),
        ("/admin/backlog/backlogentry/", "mark_processed"),
    ],
)
def test_admin_actions_are_not_offered_or_run_without_the_change_permission(
    readonly, world, changelist, action
):
    page = readonly.get(changelist)
    assert page.status_code == 200
    assert f'value="{action}"' not in page.content.decode()
    before = snapshot(world)
    target = {
        "alert": world.alert.pk,
        "check": world.check.pk,
        "batchoperation": world.running.pk if action == "cancel_batches" else world.finished.pk,
        "backlogentry": world.failed_entry.pk,
    }[changelist.rstrip("/").rsplit("/", 1)[-1]]
    admin_action(readonly, changelist, action, target)
    assert snapshot(world) == before
    assert Check.objects.get(pk=world.check.pk).enabled


def test_admin_batch_actions_run_with_the_batch_change_permission(django_user_model, world):
    operator = user_client(
        django_user_model, "operator", VIEW_ALL + ["batches.change_batchoperation"]
    )
    page = operator.get("/admin/batches/batchoperation/").content.decode()
    assert 'value="cancel_batches"' in page and 'value="retry_failed_items"' in page
    admin_action(operator, "/admin/batches/batchoperation/", "cancel_batches", world.running.pk)
    assert BatchOperation.objects.get(pk=world.running.pk).status == BatchStatus.CANCELLED
    # The change page itself stays read-only.
    assert (
        operator.post(f"/admin/batches/batchoperation/{world.running.pk}/change/", {}).status_code
        == 403
    )
