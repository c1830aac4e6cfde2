from django.core.management.base import BaseCommand, CommandError

from monitoring.checks.checkfile import CheckFileError, load_check_file


class Command(BaseCommand):
    help = (
        "Load checks (and notification channels, escalation policy, maintenance windows) from a "
        "YAML or JSON file. Upserts by name; the whole file is validated first and nothing is "
        "written if any entry is invalid."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="path to the check file (.yaml, .yml or .json)")
        parser.add_argument(
            "--prune",
            action="store_true",
            help="delete checks (and other named entries) that are not in the file; their "
            "open alerts are resolved. Refused for a file with no checks unless --allow-empty",
        )
        parser.add_argument(
            "--allow-empty",
            action="store_true",
            help="with --prune, accept a file with no checks (deletes every check)",
        )

    def handle(self, *args, file: str, prune: bool, allow_empty: bool, **options):
        try:
            result = load_check_file(file, prune=prune, allow_empty=allow_empty)
        except CheckFileError as exc:
            count = len(exc.problems)
            details = "\n".join(f"  - {p}" for p in exc.problems)
            raise CommandError(
                f"{file}: {count} problem{'s' if count > 1 else ''}, nothing was written:\n{details}"
            ) from None
        self.stdout.write(f"Loaded {file}: {result.summary()}")
