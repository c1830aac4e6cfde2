"""Template tags of the monitoring pages."""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator

from monitoring.observability.readings import overall_state as read_overall_state
from opsconsole.templatetags.ops_pages import age, number, uptime, utc

register = template.Library()


@register.inclusion_tag("pages/_overall_state.html", takes_context=True)
def overall_state(context: template.Context) -> dict[str, Any]:
    """The state badge shown in the header of every staff page."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if not (user and user.is_authenticated and user.is_staff):
        return {"state": None}
    state = context.get("overall")
    if state is None:
        state = read_overall_state()
    return {"state": state}


def _e(value: Any) -> str:
    """``value`` escaped for text and attributes: what ``{{ value }}`` does in a template (the
    same five characters as django.utils.html.escape), without its lazy-string wrapper, which
    costs more than the escaping over thousands of values."""
    return html.escape(str(value), quote=True)


def _truncated(text: str, length: int) -> str:
    """``|truncatechars:length``; a text within the length skips the Truncator's per-character
    walk (the same NFC text comes back), which 500 short messages would each pay."""
    if len(text) <= length:
        return unicodedata.normalize("NFC", text)
    return Truncator(text).chars(length)


def _muted_badge(until: datetime | None) -> str:
    """templates/pages/_muted_badge.html, for rows built here."""
    if not until:
        return ""
    return (
        ' <span class="badge muted-state" data-muted="1" '
        f'title="Notifications muted until {_e(utc(until))}">'
        f"muted until {timezone.localtime(until):%H:%M}</span>"
    )


@register.simple_tag
def dashboard_check_row(check: Any) -> SafeString:
    """One check's row on the dashboard: name (muted, paused), status, uptime over 24 h, the
    24-hour strip, last value and, when not ok, its message.

    Built here rather than in the template: with 500 checks the template's per-row variable
    lookups and filters cost about 100 ms of a page whose budget is 200 ms; this is the same
    markup, every value escaped. Expects the attributes the dashboard puts on each check
    (``muted_until``, ``uptime_24h``, ``strip``: already safe SVG)."""
    status = check.status if check.enabled else "paused"
    badges = _muted_badge(check.muted_until)
    if not check.enabled:
        badges += ' <span class="badge muted-state">paused</span>'
    message = ""
    if check.status != "ok" and check.last_message:
        message = f'<span class="message">{_e(_truncated(check.last_message, 120))}</span>'
    name, state = _e(check.name), _e(check.status)
    return mark_safe(  # noqa: S308 - every value is escaped by _e, the strip is SafeString
        f'<a class="check-row {_e(status)}" href="/checks/{int(check.pk)}/"'
        f' title="{_e(check.last_message)}" data-check="{name}" data-status="{state}">'
        f'<span class="name">{name}{badges}</span>'
        f'<span><span class="badge {state}">{state}</span></span>'
        '<span class="uptime" title="Share of the last 24 h not critical">'
        f"{_e(uptime(check.uptime_24h))}</span>"
        f'<span class="strip-cell-wrap">{conditional_escape(check.strip)}</span>'
        f'<span class="value">{_e(number(check.last_value))}</span>{message}</a>'
    )


@register.simple_tag
def check_list_rows(rows: Iterable[Any]) -> SafeString:
    """The rows of the checks list (templates/pages/check_list.html): status (disabled,
    muted), name, component, kind, the 24-hour strip, uptime over 24 h / 7 d / 30 d, value,
    message and last run, each cell labelled for the stacked layout on a phone.

    One tag for the whole body: 500 rows through the template engine cost about 140 ms
    (a variable lookup and an escape per cell); here every value is escaped by ``_e`` and
    the strip is already safe SVG. ``rows`` are ``monitoring.web.checks.CheckRow``."""
    parts = []
    for row in rows:
        check = row.check
        state = _e(check.status)
        disabled = "" if check.enabled else ' <span class="muted">disabled</span>'
        uptimes = "".join(
            f'<td data-label="Uptime {label}" class="num uptime">{_e(text)}</td>'
            for label, text in row.uptimes
        )
        last_run = f"{age(check.last_run_at)} ago" if check.last_run_at else "never"
        parts.append(
            f'<tr data-check="{int(check.pk)}">'
            f'<td data-label="Status"><span class="badge {state}">{state}</span>'
            f"{disabled}{_muted_badge(row.muted_until)}</td>"
            f'<td data-label="Check"><a href="/checks/{int(check.pk)}/">{_e(check.name)}</a></td>'
            f'<td data-label="Component">{_e(check.component)}</td>'
            f'<td data-label="Kind">{_e(check.kind)}</td>'
            f'<td data-label="Last 24 hours" class="strip-cell">{conditional_escape(row.strip)}</td>'
            f"{uptimes}"
            f'<td data-label="Value" class="num">{_e(number(check.last_value))}</td>'
            f'<td data-label="Message" class="message">'
            f"{_e(_truncated(check.last_message or '', 160))}</td>"
            f'<td data-label="Last run">{_e(last_run)}</td></tr>\n'
        )
    return mark_safe("".join(parts))  # noqa: S308 - every value is escaped by _e
