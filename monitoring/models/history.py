"""Check history summarised per time bucket: what long-range charts, status strips and
retention read instead of millions of raw runs."""

from __future__ import annotations

from django.db import models

from monitoring.models.checks import Check, CheckStatus


class RollupPeriod(models.IntegerChoices):
    FIVE_MINUTES = 300, "5 minutes"
    HOUR = 3600, "1 hour"


class CheckRollup(models.Model):
    """The runs of one check in one bucket ``[bucket, bucket + period)``.

    Rewritten whole by ``monitoring.history.rollups.refresh_rollups`` (an idempotent upsert), so
    a bucket recomputed twice, or by two workers at once, ends the same.
    """

    check_obj = models.ForeignKey(
        Check,
        on_delete=models.CASCADE,
        related_name="rollups",
        db_column="check_id",
        verbose_name="check",
    )
    period = models.PositiveIntegerField(choices=RollupPeriod.choices)
    bucket = models.DateTimeField(help_text="Start of the bucket (UTC).")
    run_count = models.PositiveIntegerField(default=0)
    # Runs whose own status was not ok (warning, critical or unknown; paused is not a failure).
    failed_count = models.PositiveIntegerField(default=0)
    value_count = models.PositiveIntegerField(default=0)
    value_sum = models.FloatField(default=0)
    value_min = models.FloatField(null=True, blank=True)
    value_max = models.FloatField(null=True, blank=True)
    duration_sum_ms = models.FloatField(default=0)
    duration_max_ms = models.FloatField(default=0)
    worst_status = models.CharField(
        max_length=10, choices=CheckStatus.choices, default=CheckStatus.OK
    )
    # Each failing run counts for the check's interval, capped at the bucket's length.
    not_ok_seconds = models.FloatField(default=0)

    class Meta:
        constraints = [
            # The upsert's conflict target; also serves "one check's buckets in a range"
            # (charts) and "these checks' hourly buckets since T" (status strips).
            models.UniqueConstraint(
                fields=["check_obj", "period", "bucket"], name="checkrollup_bucket_uniq"
            ),
        ]
        indexes = [
            # housekeeping: "buckets of this period older than the retention"
            models.Index(fields=["period", "bucket"], name="checkrollup_age_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.check_obj_id} {self.period}s at {self.bucket:%Y-%m-%d %H:%M}"

    @property
    def value_mean(self) -> float | None:
        return self.value_sum / self.value_count if self.value_count else None

    @property
    def duration_mean_ms(self) -> float | None:
        return self.duration_sum_ms / self.run_count if self.run_count else None
