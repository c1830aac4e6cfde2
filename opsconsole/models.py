"""API keys: stored as SHA-256 hashes, shown once at creation."""

from __future__ import annotations

import hashlib
import secrets

from django.db import models
from django.utils import timezone


class ApiScope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Read and write"


def hash_key(raw: str) -> str:
    # Keys are 256-bit random tokens, so a plain SHA-256 is enough: there is nothing to guess.
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiKey(models.Model):
    name = models.CharField(max_length=100, unique=True)
    prefix = models.CharField(max_length=12, help_text="First characters, to recognise a key.")
    key_hash = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=10, choices=ApiScope.choices, default=ApiScope.READ)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…, {self.scope})"

    @classmethod
    def create(cls, name: str, scope: str = ApiScope.READ) -> tuple[ApiKey, str]:
        """Creates a key and returns it with the raw secret, which is not stored anywhere."""
        raw = "ops_" + secrets.token_urlsafe(32)
        key = cls.objects.create(name=name, prefix=raw[:10], key_hash=hash_key(raw), scope=scope)
        return key, raw

    @classmethod
    def authenticate(cls, raw: str) -> ApiKey | None:
        key = cls.objects.filter(key_hash=hash_key(raw), revoked=False).first()
        if key is not None:
            now = timezone.now()
            # One write a minute at most per key, not one per request.
            if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
                cls.objects.filter(pk=key.pk).update(last_used_at=now)
        return key

    def allows(self, scope: str) -> bool:
        return self.scope == ApiScope.WRITE or scope == ApiScope.READ


class IdempotentRequest(models.Model):
    """The first answer to a write sent with an ``Idempotency-Key`` header.

    Stored in the same transaction as the rows the request created, so a client that retries
    after a timeout gets that answer back instead of creating the rows twice.
    """

    scope = models.CharField(max_length=50, help_text="The endpoint, e.g. batches.create.")
    principal = models.CharField(max_length=64, help_text="key:<API key id> or user:<user id>.")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and body.")
    status_code = models.PositiveSmallIntegerField()
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "idempotent request"
        constraints = [
            # Two requests racing with one key: the second insert waits for the first
            # transaction and then fails, so only one of them does the work.
            models.UniqueConstraint(
                fields=["scope", "principal", "key"], name="idempotent_request_unique_key"
            ),
        ]
        indexes = [
            # housekeeping: DELETE … WHERE created_at < cutoff
            models.Index(fields=["created_at"], name="idempotent_request_created"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}"


class EventCounter(models.Model):
    """A Prometheus counter kept in the database: how many times something happened.

    Rows only ever grow (``opsconsole.counters.count_events`` refuses a negative amount), and
    nothing deletes them: housekeeping removing old batches or alerts, or a retry putting failed
    items back to pending, never lowers a ``_total`` on /metrics. Incremented in the transaction
    that records the event, so a rolled-back event is not counted.
    """

    name = models.CharField(max_length=200, help_text="The sample name, e.g. batch_failures_total.")
    labels = models.CharField(
        max_length=500, blank=True, default="", help_text="Canonical JSON of the label set."
    )
    value = models.FloatField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "event counter"
        constraints = [
            # The upsert's conflict target: one row per series.
            models.UniqueConstraint(fields=["name", "labels"], name="event_counter_series"),
        ]

    def __str__(self) -> str:
        return f"{self.name}{self.labels} = {self.value:g}"
