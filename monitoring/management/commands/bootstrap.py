"""First start: an admin login and the demo checks, both only when missing; for the run
command, the whole preparation in one process and the summary it ends start-up with."""

import io
import secrets
from pathlib import Path

import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
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


RESET_COMMAND = ".venv/bin/python manage.py changepassword {username}"
RULE = "=" * 72


def where_data_lives() -> str:
    """The database (and the development key, when there is one) in an operator's words; a
    DATABASE_URL's password is never shown."""
    db = settings.DATABASES["default"]
    if "sqlite" in db["ENGINE"]:
        where = f"{Path(db['NAME']).parent}   (SQLite database {Path(db['NAME']).name}"
        return where + (", development secret key)" if settings.DEVELOPMENT_MODE else ")")
    where = f"PostgreSQL database {db['NAME']} on {db.get('HOST') or 'localhost'}"
    where += f":{db['PORT']}" if db.get("PORT") else ""
    if settings.DEVELOPMENT_MODE:
        where += f"; development secret key in {settings.DATA_DIR}"
    return where


def startup_summary(username: str, password: str | None) -> list[str]:
    """The block the run command ends start-up with: where to go, how to log in, where the data
    is, how to reset the password. The password only on the start that created it."""
    if password is not None:
        login = f"{username} / {password}   (shown this once: keep it somewhere safe)"
        reset = "reset it any time with: " + RESET_COMMAND.format(username=username)
    else:
        login = f"{username}   (password set on the first start, not shown again)"
        reset = "forgotten? reset it with: " + RESET_COMMAND.format(username=username)
    return [
        "",
        RULE,
        f" Ops Console  {settings.SITE_URL}/   (admin: {settings.SITE_URL}/admin/)",
        f" Login        {login}",
        f" Password     {reset}",
        f" Data         {where_data_lives()}",
        RULE,
    ]


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
        parser.add_argument(
            "--prepare",
            action="store_true",
            help="first migrate the database, collect the static files and install the "
            "schedules, in this one process (what the run command does on every start)",
        )
        parser.add_argument(
            "--summary",
            action="store_true",
            help="end with the start-up summary (URL, login, reset command, where the data is) "
            "instead of a login line",
        )

    def handle(self, *args, demo: bool, username: str, prepare: bool, summary: bool, **options):
        if prepare:
            # One process instead of four: each Django start costs seconds on a busy machine.
            call_command("migrate", interactive=False, verbosity=0)
            call_command("collectstatic", interactive=False, verbosity=0)
        User = get_user_model()
        password = None
        if User.objects.filter(username=username).exists():
            if not summary:
                self.stdout.write(f"Login: user {username!r} exists (password unchanged).")
        else:
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(username=username, email="", password=password)
            if not summary:
                self.stdout.write(
                    f"Login: {username} / {password}   (shown once; change it in the admin)"
                )
        # With the summary, only what this start did is said: later starts stay short.
        if NotificationChannel.objects.exists():
            if not summary:
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
                if not summary:
                    self.stdout.write("Checks exist; demo checks not loaded.")
            else:
                try:
                    result = apply_document(validate_document(demo_document()))
                except CheckFileError as exc:
                    raise CommandError(f"demo checks are invalid: {exc}") from None
                self.stdout.write(f"Demo checks loaded: {result.summary()}")
        if prepare:
            call_command("setup_schedules", stdout=io.StringIO())
        if summary:
            self.stdout.write("\n".join(startup_summary(username, password)))
