"""First start: an admin login and the demo checks, both only when missing."""

import secrets
from pathlib import Path

import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from monitoring.checks.checkfile import CheckFileError, apply_document, validate_document
from monitoring.models import AlertSeverity, ChannelKind, Check, NotificationChannel
from monitoring.models.notifications import STAFF_RECIPIENTS

DEFAULT_CHANNEL = "staff-email"
DEMO_FILE = Path(__file__).resolve().parents[2] / "demo_checks.yaml"


def demo_document() -> dict:
    text = DEMO_FILE.read_text().replace("{site_url}", settings.SITE_URL)
    # The worker check's scope: processes running in this installation's directory.
    text = text.replace("{base_dir}", str(Path(settings.BASE_DIR).resolve()))
    document = yaml.safe_load(text)
    if settings.REDIS_URL:
        document["checks"].append(
            {
                "name": "console-redis",
                "kind": "redis",
                "component": "console",
                "interval": "1m",
                "timeout": "5s",
                "config": {"url": settings.REDIS_URL, "metric": "memory"},
            }
        )
    return document


class Command(BaseCommand):
    help = (
        "Prepare a new installation: create the 'admin' superuser with a generated password "
        "(printed once; skipped if the user exists), a default notification channel (email to "
        "staff users; skipped if any channel exists) and, with --demo, load the demo checks that "
        "watch the console and this machine (skipped if any check exists)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--demo", action="store_true", help="load the demo checks if there are no checks"
        )
        parser.add_argument("--username", default="admin")

    def handle(self, *args, demo: bool, username: str, **options):
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"Login: user {username!r} exists (password unchanged).")
        else:
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(username=username, email="", password=password)
            self.stdout.write(
                f"Login: {username} / {password}   (shown once; change it in the admin)"
            )
        if NotificationChannel.objects.exists():
            self.stdout.write("Notification channels exist; default channel not created.")
        else:
            # Without a channel every alert would reach nobody. Made here, on the run
            # command's first start, not by a migration: an empty database stays empty.
            NotificationChannel.objects.create(
                name=DEFAULT_CHANNEL,
                kind=ChannelKind.EMAIL,
                recipients=STAFF_RECIPIENTS,
                min_severity=AlertSeverity.WARNING,
            )
            self.stdout.write(
                f"Notification channel {DEFAULT_CHANNEL!r} created: email to staff users "
                "(to the log while EMAIL_HOST is unset); change it in the admin."
            )
        if demo:
            if Check.objects.exists():
                self.stdout.write("Checks exist; demo checks not loaded.")
            else:
                try:
                    result = apply_document(validate_document(demo_document()))
                except CheckFileError as exc:
                    raise CommandError(f"demo checks are invalid: {exc}") from None
                self.stdout.write(f"Demo checks loaded: {result.summary()}")
