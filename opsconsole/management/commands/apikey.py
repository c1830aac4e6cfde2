from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction

from opsconsole.models import ApiKey, ApiScope


class Command(BaseCommand):
    help = "Manage API keys: create (prints the key once), list, revoke."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="{create,list,revoke}")
        create = sub.add_parser("create", help="create a key and print it once")
        create.add_argument("name", help="who uses the key, e.g. deploy-bot")
        create.add_argument(
            "--scope",
            choices=ApiScope.values,
            default=ApiScope.READ,
            help="read (default) or write (write includes read)",
        )
        sub.add_parser("list", help="list keys (never the secrets)")
        revoke = sub.add_parser("revoke", help="revoke a key by name")
        revoke.add_argument("name")

    def handle(self, *args, action: str, **options):
        if action == "create":
            try:
                with transaction.atomic():
                    key, raw = ApiKey.create(options["name"], options["scope"])
            except IntegrityError:
                raise CommandError(
                    f"a key named {options['name']!r} exists; pick another name or revoke it"
                ) from None
            self.stdout.write(
                f"Created {key.scope} key {key.name!r}. Store it now; it is not shown again:"
            )
            self.stdout.write(raw)
        elif action == "list":
            for key in ApiKey.objects.order_by("name"):
                used = key.last_used_at.isoformat() if key.last_used_at else "never"
                state = "revoked" if key.revoked else "active"
                self.stdout.write(
                    f"{key.name:<24} {key.prefix}…  {key.scope:<5}  {state:<7}  last used {used}"
                )
        else:
            updated = ApiKey.objects.filter(name=options["name"]).update(revoked=True)
            if not updated:
                raise CommandError(f"no key named {options['name']!r}")
            self.stdout.write(f"Revoked {options['name']!r}.")
