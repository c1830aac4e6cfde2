"""Signed one-click acknowledge links: bound to one alert, expiring, usable once."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.urls import reverse

from monitoring.models import Alert

SALT = "opsconsole.alerts.ack-link"


def max_age() -> float:
    return float(settings.ACK_LINK_MAX_AGE)


def make_token(alert: Alert) -> str:
    return signing.dumps({"a": alert.pk, "n": alert.ack_nonce}, salt=SALT, compress=True)


def ack_url(alert: Alert) -> str:
    return f"{settings.SITE_URL}{reverse('alert-ack-link', args=[make_token(alert)])}"


def alert_url(alert: Alert) -> str:
    return f"{settings.SITE_URL}{reverse('alert-detail', args=[alert.pk])}"


@dataclass
class LinkCheck:
    alert: Alert | None
    nonce: str = ""
    problem: str = ""  # "", "expired", "invalid", "used", "missing"


def read_token(token: str) -> LinkCheck:
    """What a link refers to, or why it cannot be used; never raises."""
    try:
        payload = signing.loads(token, salt=SALT, max_age=max_age())
    except signing.SignatureExpired:
        return LinkCheck(None, problem="expired")
    except signing.BadSignature:
        return LinkCheck(None, problem="invalid")
    if not isinstance(payload, dict) or not isinstance(payload.get("a"), int):
        return LinkCheck(None, problem="invalid")
    alert = Alert.objects.select_related("check_obj").filter(pk=payload["a"]).first()
    if alert is None:
        return LinkCheck(None, problem="missing")
    nonce = str(payload.get("n", ""))
    if nonce != alert.ack_nonce:
        return LinkCheck(None, problem="invalid")
    if alert.ack_link_used_at is not None:
        return LinkCheck(alert, nonce, problem="used")
    return LinkCheck(alert, nonce)
