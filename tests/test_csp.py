"""The Content-Security-Policy: on every response, and every page works under it in Chromium."""

from __future__ import annotations

from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.utils import timezone

from backlog.models import BacklogEntry
from batches.models import BatchItem, BatchOperation
from monitoring.kinds import Observation
from monitoring.models import Alert, Check, CheckRun, Report
from opsconsole.csp import POLICY
from tests.conftest import screenshot

HOSTILE = '<script>alert(1)</script><img src=x onerror="window.__xss=1">'


def directives(header: str) -> dict[str, list[str]]:
    parsed = {}
    for part in header.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def console_data() -> dict[str, str]:
    """One of everything a page can show, so that every template branch renders."""
    check = Check.objects.create(
        name="api-health", kind="http", component="api", config={"url": "http://127.0.0.1:9/"}
    )
    start = timezone.now() - timedelta(hours=2)
    CheckRun.objects.bulk_create(
        CheckRun(
            check_obj=check,
            status="ok" if i % 5 else "warning",
            value=100 + i % 7 * 20,
            duration_ms=5 + i % 3,
            created_at=start + timedelta(minutes=i),
        )
        for i in range(60)
    )
    check.record(Observation(value=4200.0, message=HOSTILE, status="critical"), duration_ms=30)
    alert = Alert.objects.create(
        dedup_key="check:api",
        check_obj=check,
        title=f"api down {HOSTILE}",
        severity="critical",
        message=HOSTILE,
    )
    running = BatchOperation.objects.create(
        operation="http",
        creator="billing",
        status="running",
        total_items=4,
        succeeded_items=1,
        failed_items=1,
        started_at=timezone.now() - timedelta(seconds=30),
    )
    finished = BatchOperation.objects.create(
        operation="http",
        creator="ops",
        status="completed_with_errors",
        total_items=3,
        succeeded_items=2,
        failed_items=1,
        started_at=timezone.now() - timedelta(seconds=10),
        finished_at=timezone.now(),
    )
    for key, status in [("a", "succeeded"), ("b", "failed"), ("c", "pending"), ("d", "pending")]:
        BatchItem.objects.create(batch=running, key=key, status=status, error=HOSTILE)
    BatchItem.objects.create(batch=finished, key="x", status="failed", attempts=3, error=HOSTILE)
    BacklogEntry.objects.create(source="users", key="42", reason=HOSTILE)
    BacklogEntry.objects.create(source="users", key="43", status="failed", last_error=HOSTILE)
    report = Report.objects.create(title="Health report", text=HOSTILE, overall_status="ok")
    return {
        "dashboard": "/",
        "checks": "/checks/",
        "check detail": f"/checks/{check.pk}/",
        "alerts": "/alerts/",
        "alert detail": f"/alerts/{alert.pk}/",
        "batches": "/batches/",
        "running batch": f"/batches/{running.pk}/",
        "finished batch": f"/batches/{finished.pk}/",
        "backlog": "/backlog/",
        "activity": "/activity/",
        "reports": "/reports/",
        "report detail": f"/reports/{report.pk}/",
        "admin index": "/admin/",
        "admin checks": "/admin/monitoring/check/",
        "admin batches": "/admin/batches/batchoperation/",
        "admin check change": f"/admin/monitoring/check/{check.pk}/change/",
    }


# --- fast, client-level ---------------------------------------------------------------------


def test_policy_allows_scripts_and_styles_only_from_the_console():
    policy = directives(POLICY)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    assert "unsafe" not in POLICY


@pytest.mark.django_db
def test_every_kind_of_response_carries_the_policy(client, staff_client, api_key_factory):
    anonymous = [
        client.get("/admin/login/"),
        client.get("/"),  # the redirect to the login page
        client.get("/healthz"),
        client.get("/no-such-page/"),
        client.get("/static/opsconsole/console.js"),
        client.post("/api/backlog/", "{", content_type="application/json"),
    ]
    key = api_key_factory("read")
    signed_in = [
        staff_client.get("/"),
        staff_client.get("/admin/"),
        client.get("/api/checks/", HTTP_AUTHORIZATION=f"Bearer {key}"),
    ]
    for response in anonymous + signed_in:
        assert response["Content-Security-Policy"] == POLICY, response


class InlineCode(HTMLParser):
    """What the policy would refuse: inline scripts and styles, handlers, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style> element")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=>")
            if name == "style":
                self.found.append(f"<{tag} style=>")
            if (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}=javascript:>")

    handle_startendtag = handle_starttag


@pytest.mark.django_db
def test_pages_have_no_inline_scripts_handlers_or_styles(staff_client):
    urls = console_data()
    urls["dashboard fragment"] = "/dashboard/fragment/"
    responses = {name: staff_client.get(url) for name, url in urls.items()}
    responses["admin login"] = Client().get("/admin/login/")
    for name, response in responses.items():
        assert response.status_code == 200, name
        parser = InlineCode()
        parser.feed(response.content.decode())
        # The hostile data is escaped, so anything found is the console's own markup.
        assert parser.found == [], name


@pytest.mark.django_db
def test_batch_progress_bar_widths_are_svg_attributes(staff_client):
    console_data()
    running = BatchOperation.objects.get(status="running")
    html = staff_client.get(f"/batches/{running.pk}/progress/").content.decode()
    assert '<rect class="succeeded" width="25" height="1"/>' in html
    assert '<rect class="failed" x="25" width="25" height="1"/>' in html
    assert 'aria-valuenow="2"' in html and 'aria-valuemax="4"' in html


# --- Chromium -------------------------------------------------------------------------------

# Runs before any page script, so it sees every violation, including those during parsing.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI + " " + e.sourceFile + ":" + e.lineNumber);
});
"""


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_every_page_works_in_chromium_without_a_policy_violation(logged_in_page):
    page = logged_in_page
    urls = console_data()
    problems: list[str] = []
    page.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type}: {message.text}")
            if message.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.add_init_script(RECORD_VIOLATIONS)
    page.clock.install()
    for name, url in urls.items():
        response = page.goto(url)
        assert response is not None and response.status == 200, name
        assert response.headers["content-security-policy"] == POLICY
        page.wait_for_load_state("load")
        if name == "dashboard":
            # The refresh timer runs from console.js: let it fire and swap in the body.
            page.evaluate("window.__notReloaded = true")
            page.clock.run_for(16_000)
            page.wait_for_function("document.querySelector('.refresh-note') !== null")
            assert page.evaluate("window.__notReloaded === true")
        if name == "running batch":
            page.clock.run_for(3_500)
            page.wait_for_selector("#batch-progress svg.progress rect.succeeded")
        violations = page.evaluate("window.__cspViolations")
        assert violations == [], f"{name}: {violations}"
        assert page.evaluate("window.__xss === undefined"), name
        screenshot(page, f"csp-{name.replace(' ', '-')}")
    # The stylesheet applied: the header is dark, not the browser's default.
    assert page.evaluate("getComputedStyle(document.querySelector('header')).display") == "flex"
    assert problems == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_styles_from_the_static_stylesheet_apply_in_chromium(logged_in_page):
    page = logged_in_page
    console_data()
    page.goto("/batches/")
    bar = page.locator("svg.progress").first
    assert bar.bounding_box()["width"] >= 80
    fill = page.evaluate(
        "getComputedStyle(document.querySelector('svg.progress rect.succeeded')).fill"
    )
    assert fill == "rgb(26, 127, 55)"  # --ok
    page.goto("/")
    colour = page.evaluate("getComputedStyle(document.querySelector('header')).backgroundColor")
    assert colour == "rgb(36, 41, 47)"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_filter_selects_submit_their_form_without_inline_handlers(logged_in_page):
    page = logged_in_page
    console_data()
    page.goto("/batches/")
    with page.expect_navigation():
        page.select_option("select[name=status]", "running")
    assert "status=running" in page.url
    page.goto("/activity/")
    with page.expect_navigation():
        page.select_option("#window", index=1)
    assert "window=" in page.url


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_injected_inline_script_is_refused_by_the_browser(logged_in_page):
    page = logged_in_page
    page.add_init_script(RECORD_VIOLATIONS)
    page.goto("/")
    # As if escaping had failed somewhere: markup with an inline script and handler.
    page.evaluate(
        """() => {
          const s = document.createElement('script');
          s.textContent = 'window.__xss = 1';
          document.body.appendChild(s);
          document.body.insertAdjacentHTML('beforeend', '<img src=x onerror="window.__xss=2">');
        }"""
    )
    page.wait_for_function("window.__cspViolations.length >= 2")
    assert page.evaluate("window.__xss === undefined")
