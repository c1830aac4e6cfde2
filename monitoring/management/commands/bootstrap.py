"""First start: an admin login and the demo checks, both only when missing."""

import secrets
from pathlib import Path

import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from monitoring.checks.checkfile import CheckFileError, apply_document, validate_document
from monitoring.models import Check

DEMO_FILE = Path(__file__).resolve().parents[2] / "demo_checks.yaml"


def demo_document() -> dict:
    document = yaml.safe_load(DEMO_FILE.read_text().replace("{site_url}", settings.SITE_URL))
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
        "(printed once; skipped if the user exists) and, with --demo, load the demo checks that "
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
        if demo:
            if Check.objects.exists():
                self.stdout.write("Checks exist; demo checks not loaded.")
            else:
                try:
                    result = apply_document(validate_document(demo_document()))
                except CheckFileError as exc:
                    raise CommandError(f"demo checks are invalid: {exc}") from None
                self.stdout.write(f"Demo checks loaded: {result.summary()}")
