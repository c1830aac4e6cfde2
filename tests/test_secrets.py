"""Secrets are never shown: planted in checks, channels, batches and backlog entries, echoed back
by real loopback servers, and looked for in every page, admin page, API answer, CLI output, log
line and notification produced afterwards."""

from __future__ import annotations

import io
import json
import logging
from urllib.parse import quote

import pytest
from django.core.management import call_command

from backlog import services as backlog_services
from backlog.models import BacklogEntry
from batches.executor import run_batch
from batches.models import BatchOperation
from batches.services import create_batch
from monitoring.alerts.escalation import escalate_pass
from monitoring.checks.runner import run_checks
from monitoring.models import (
    Alert,
    Check,
    EscalationPolicy,
    EscalationStep,
    Notification,
    NotificationChannel,
)
from opsconsole.logging import JsonFormatter
from opsconsole.redaction import (
    mask_config,
    mask_dsn,
    mask_headers,
    mask_url,
    restore_masked,
    scrub,
    secret_values,
)
from tests.conftest import Recorded, closed_port

HEADER = "hdrsecret-1111"
PW_AT = "pw@at-2222"
PW_COLON = "pw:colon-3333"
PW_PCT = "pw%40pct-4444"  # spelled encoded in the URL; the decoded form is a secret too
TOKEN = "tokquery-5555"
API_KEY = "apikeyq-6666"
DSN_URL_PW = "dsnurlpw-7777"
DSN_KV_PW = "dsnkvpw-8888"
REDIS_PW = "redispw-9999"
SLACK_PATH = "slackpath1010abcdefgh"
WEBHOOK_PATH = "whpath-1212"
WEBHOOK_TOKEN = "whtok-1313"
BATCH_HEADER = "batchhdr-1414"
BATCH_SIG = "batchsig-1515"
BACKLOG_KEY = "blpayload-1616"
BACKLOG_URL_PW = "blurlpw-1717"
HANDLER_PW = "handlerpw-1818"
HANDLER_TOKEN = "hdltok-1919"
LOADED_PW = "loadedpw-2020"

SECRETS = [
    HEADER,
    PW_AT,
    PW_COLON,
    PW_PCT,
    "pw@pct-4444",
    TOKEN,
    API_KEY,
    DSN_URL_PW,
    DSN_KV_PW,
    REDIS_PW,
    SLACK_PATH,
    WEBHOOK_PATH,
    WEBHOOK_TOKEN,
    BATCH_HEADER,
    BATCH_SIG,
    BACKLOG_KEY,
    BACKLOG_URL_PW,
    HANDLER_PW,
    HANDLER_TOKEN,
    LOADED_PW,
]


def echo(request: Recorded) -> tuple[int, dict[str, str], bytes]:
    """A server that quotes the whole request back in its error, as careless APIs do."""
    headers = "\n".join(f"{name}: {value}" for name, value in request.headers.items())
    text = f"bad request {request.method} {request.path}\n{headers}\n{request.body.decode()}"
    return 500, {"Content-Type": "text/plain"}, text.encode()


def leaks(text: str) -> list[str]:
    found = []
    for secret in SECRETS:
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            if form in text:
                found.append(form)
    return found


@pytest.fixture
def json_log():
    """Every log line as the JSON formatter writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


def plant_checks(echo_url: str) -> list[Check]:
    host = echo_url.split("://", 1)[1]
    dead = closed_port()
    configs = {
        "http-header-at": {
            "url": f"http://user:{PW_AT}@{host}/health?token={TOKEN}&api_key={API_KEY}",
            "headers": {"X-Api-Token": HEADER, "Accept": "application/json"},
        },
        "http-colon": {"url": f"http://user:{PW_COLON}@{host}/health"},
        "http-pct": {"url": f"http://user:{PW_PCT}@{host}/health"},
        "redis-pw": {"url": f"redis://:{REDIS_PW}@127.0.0.1:{dead}/0", "metric": "latency"},
    }
    checks = [
        Check.objects.create(name=name, kind=kind, config=config, timeout_seconds=2)
        for name, config in configs.items()
        for kind in ["redis" if name.startswith("redis") else "http"]
    ]
    # Database targets are stored as written (the admin and check files validate them): the
    # probe fails on a closed port and its driver's error must not quote the password.
    for name, dsn in {
        "db-url": f"postgresql://app:{DSN_URL_PW}@127.0.0.1:{dead}/app",
        "db-kv": f"host=127.0.0.1 port={dead} user=app password={DSN_KV_PW} dbname=app",
    }.items():
        checks.append(
            Check.objects.create(name=name, kind="database", config={"dsn": dsn}, timeout_seconds=2)
        )
    return checks


def plant_channels(receiver_url: str, broken_url: str) -> None:
    NotificationChannel.objects.create(
        name="chat", kind="slack", url=f"{receiver_url}/services/T0SLACK10/B0SLACK10/{SLACK_PATH}"
    )
    NotificationChannel.objects.create(
        name="hook", kind="webhook", url=f"{broken_url}/hooks/{WEBHOOK_PATH}?token={WEBHOOK_TOKEN}"
    )
    NotificationChannel.objects.create(name="mail", kind="email", recipients="oncall@example.com")
    policy, _ = EscalationPolicy.objects.update_or_create(
        severity="critical", defaults={"repeat_seconds": None}
    )
    policy.steps.all().delete()
    EscalationStep.objects.create(policy=policy, position=0, after_seconds=0, channels=[])


def everything_shown(client, read_key: str, checks: list[Check], batch: BatchOperation) -> dict:
    """Every page, admin page and API answer that could show a planted secret."""
    urls = [
        "/",
        "/checks/",
        "/alerts/",
        "/activity/",
        "/backlog/",
        "/batches/",
        f"/batches/{batch.pk}/",
        *(f"/checks/{check.pk}/" for check in checks),
        *(f"/alerts/{alert.pk}/" for alert in Alert.objects.all()),
    ]
    admin = [
        "monitoring/check",
        "monitoring/checkrun",
        "monitoring/alert",
        "monitoring/alertevent",
        "monitoring/notification",
        "monitoring/notificationchannel",
        "batches/batchoperation",
        "batches/batchitem",
        "backlog/backlogentry",
    ]
    for model in admin:
        urls.append(f"/admin/{model}/")
    urls += [f"/admin/monitoring/check/{check.pk}/change/" for check in checks]
    urls += [
        f"/admin/monitoring/notificationchannel/{c.pk}/change/"
        for c in NotificationChannel.objects.all()
    ]
    urls += [f"/admin/monitoring/notification/{n.pk}/change/" for n in Notification.objects.all()]
    urls += [f"/admin/backlog/backlogentry/{e.pk}/change/" for e in BacklogEntry.objects.all()]
    urls.append(f"/admin/batches/batchoperation/{batch.pk}/change/")
    shown = {}
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        shown[url] = response.content.decode()
    api = ["/api/checks/", "/api/batches/", f"/api/batches/{batch.pk}/", "/api/alerts/"]
    api.append("/api/backlog/stats/")
    for url in api:
        response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {read_key}")
        assert response.status_code == 200, url
        shown[f"api {url}"] = response.content.decode()
    return shown


def cli_output(batch: BatchOperation, tmp_path) -> dict[str, str]:
    check_file = tmp_path / "checks.yaml"
    check_file.write_text(
        "checks:\n"
        "  - name: loaded\n"
        "    kind: http\n"
        "    config:\n"
        f"      url: ftp://user:{LOADED_PW}@example.test/\n"
    )
    runs = {
        "runchecks": ["runchecks", "--all"],
        "backlog list": ["backlog", "list"],
        "backlog list json": ["backlog", "list", "--json"],
        "backlog status": ["backlog", "status"],
        "batches list": ["batches", "list"],
        "batches show": ["batches", "show", str(batch.pk)],
        "loadchecks": ["loadchecks", str(check_file)],
    }
    outputs = {}
    for name, args in runs.items():
        out, err = io.StringIO(), io.StringIO()
        try:
            call_command(*args, stdout=out, stderr=err)
        except BaseException as exc:  # noqa: BLE001 - a CommandError's text is output too
            err.write(str(exc))
        outputs[name] = out.getvalue() + err.getvalue()
    return outputs


@pytest.mark.django_db(transaction=True)
def test_planted_secrets_appear_nowhere_a_person_or_read_key_can_look(
    http_server, staff_client, api_key_factory, mailoutbox, settings, json_log, tmp_path
):
    echo_server, receiver, broken = http_server(echo), http_server(), http_server(echo)
    checks = plant_checks(echo_server.url)
    plant_channels(receiver.url, broken.url)
    handler_host = echo_server.url.split("://", 1)[1]
    settings.BACKLOG_HANDLERS = {
        "crm": f"webhook:http://hook:{HANDLER_PW}@{handler_host}/bl?token={HANDLER_TOKEN}"
    }
    backlog_services.enqueue(
        "crm",
        "user-1",
        "profile changed",
        {"api_key": BACKLOG_KEY, "target": f"http://sync:{BACKLOG_URL_PW}@crm.example/"},
    )
    batch = create_batch(
        {
            "operation": "http",
            "creator": "tests",
            "items": ["a", "b"],
            "payload": {
                "url": f"{echo_server.url}/items/{{key}}?sig={BATCH_SIG}",
                "headers": {"Authorization": f"Bearer {BATCH_HEADER}"},
                "expect_status": [200],
                "timeout": 2,
            },
        }
    )
    settings.BATCH_ITEM_MAX_ATTEMPTS = 1

    run_checks(checks, claim=False)
    escalate_pass()
    backlog_services.process()
    run_batch(str(batch.id))

    # The probes and handlers really reached the echo server, so the errors had secrets to leak.
    assert any(HEADER in str(r.headers) for r in echo_server.requests)
    assert Check.objects.filter(status="critical").count() == len(checks)
    assert BacklogEntry.objects.get().last_error
    assert batch.items.exclude(error="").count() == 2

    shown = everything_shown(staff_client, api_key_factory("read"), checks, batch)
    shown.update({f"cli {k}": v for k, v in cli_output(batch, tmp_path).items()})
    shown["logs"] = json_log.getvalue()
    shown["mail"] = "\n".join(f"{m.subject}\n{m.body}" for m in mailoutbox)
    shown["slack"] = "\n".join(r.body.decode() for r in receiver.requests)
    shown["webhook bodies"] = "\n".join(r.body.decode() for r in broken.requests)
    assert mailoutbox and receiver.requests, "notifications were sent"
    found = {where: leaks(text) for where, text in shown.items() if leaks(text)}
    assert found == {}


@pytest.mark.django_db
def test_admin_shows_check_config_masked_and_keeps_the_secret_when_the_mask_comes_back(
    staff_client,
):
    config = {
        "url": f"https://user:{PW_AT}@api.example.test/health?token={TOKEN}",
        "headers": {"X-Api-Token": HEADER, "Accept": "application/json"},
    }
    check = Check.objects.create(name="api", kind="http", config=config)
    url = f"/admin/monitoring/check/{check.pk}/change/"
    page = staff_client.get(url).content.decode()
    assert leaks(page) == []
    form = {
        "name": "api",
        "kind": "http",
        "component": "",
        "description": "renamed only",
        "enabled": "on",
        "config": json.dumps(mask_config(config)),
        "interval_seconds": check.interval_seconds,
        "timeout_seconds": check.timeout_seconds,
        "direction": check.direction,
        "debounce": check.debounce,
        "mute_until": "",
    }
    response = staff_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    check.refresh_from_db()
    assert check.description == "renamed only"
    assert check.config["url"] == config["url"]
    assert check.config["headers"] == config["headers"]


@pytest.mark.django_db
def test_admin_refuses_a_mask_edited_around_instead_of_storing_it(staff_client):
    config = {"url": f"https://user:{PW_COLON}@api.example.test/health"}
    check = Check.objects.create(name="api", kind="http", config=config)
    url = f"/admin/monitoring/check/{check.pk}/change/"
    form = {
        "name": "api",
        "kind": "http",
        "enabled": "on",
        "config": json.dumps({"url": "https://user:***@other.example.test/health"}),
        "interval_seconds": check.interval_seconds,
        "timeout_seconds": check.timeout_seconds,
        "direction": check.direction,
        "debounce": check.debounce,
    }
    response = staff_client.post(url, form)
    assert response.status_code == 200
    assert "type the whole value again" in response.content.decode()
    check.refresh_from_db()
    assert check.config == config


@pytest.mark.django_db
def test_channel_admin_shows_the_webhook_masked_and_keeps_it_when_unchanged(staff_client):
    url = f"https://hooks.slack.com/services/T0SLACK10/B0SLACK10/{SLACK_PATH}"
    channel = NotificationChannel.objects.create(name="chat", kind="slack", url=url)
    change = f"/admin/monitoring/notificationchannel/{channel.pk}/change/"
    page = staff_client.get(change).content.decode()
    assert SLACK_PATH not in page and "https://hooks.slack.com/***" in page
    listing = staff_client.get("/admin/monitoring/notificationchannel/").content.decode()
    assert SLACK_PATH not in listing
    response = staff_client.post(
        change,
        {
            "name": "chat-renamed",
            "kind": "slack",
            "url": "https://hooks.slack.com/***",
            "recipients": "",
            "min_severity": "warning",
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    channel.refresh_from_db()
    assert channel.name == "chat-renamed" and channel.url == url


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("https://u:p@ss:w0rd@h.example/x", "p@ss:w0rd"),
        ("https://u:p%40ssword@h.example/x", "p%40ssword"),
        ("https://u:pa/ssword@h.example/x", "pa/ssword"),
        ("https://tokenonly123@h.example/x", "tokenonly123"),
        ("https://h.example/x?a=1&access_token=abcd1234", "abcd1234"),
        ("https://h.example/x?Signature=abcd1234&X-Amz-Credential=cred9999", "cred9999"),
        ("https://h.example/x?sig=abcd1234", "abcd1234"),
        ("https://h.example/x?apikey=abcd1234", "abcd1234"),
        ("https://h.example/cb#access_token=abcd1234", "abcd1234"),
        ("https://hooks.slack.com/services/T0/B0/abcd1234", "abcd1234"),
        ("https://discord.com/api/webhooks/1/abcd1234", "abcd1234"),
    ],
)
def test_mask_url_hides_secrets_however_spelled(url, secret):
    masked = mask_url(url)
    assert secret not in masked and quote(secret, safe="") not in masked
    assert masked.startswith(url.split("://")[0] + "://")
    assert secret in secret_values({"url": url}) or quote(secret) in secret_values({"url": url})


def test_mask_url_keeps_what_is_harmless():
    assert mask_url("https://h.example/a/b?page=2&q=x") == "https://h.example/a/b?page=2&q=x"
    assert mask_url("https://example.com/users/@me") == "https://example.com/users/@me"
    assert mask_url("http://127.0.0.1:8080/x", webhook=True) == "http://127.0.0.1:8080/***"


def test_mask_dsn_url_and_key_value_styles():
    assert mask_dsn("postgres://app:s3cr3t@db/app?sslmode=require") == (
        "postgres://app:***@db/app?sslmode=require"
    )
    assert mask_dsn("host=db user=app password='p w\\'x' dbname=app") == (
        "host=db user=app password=*** dbname=app"
    )
    assert "p w'x" in secret_values({"dsn": "host=db password='p w\\'x'"})


def test_mask_headers_allowlist():
    masked = mask_headers({"Accept": "text/html", "X-Custom": "abcd", "Authorization": "Bearer x"})
    assert masked == {"Accept": "text/html", "X-Custom": "***", "Authorization": "***"}


def test_scrub_replaces_raw_and_url_encoded_forms_and_restore_round_trips():
    secrets = secret_values({"password": "p@ss word/1"})
    text = "failed for p@ss word/1, p%40ss%20word%2F1 and p%40ss+word%2f1"
    assert scrub(text, secrets) == "failed for ***, *** and ***"
    config = {"url": "https://u:p@ss@h/x?token=abcd", "headers": {"X-K": "vvvv"}, "n": 1}
    assert restore_masked(mask_config(config), config) == config
