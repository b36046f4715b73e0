"""manage.py create_tenant SLUG [--name NAME] — idempotent."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.services import SYSTEM_TENANT_SLUG, TENANT_NAME_MAX_LENGTH, tenant_provision


class Command(BaseCommand):
    help = (
        "Creates a tenant (idempotent: an existing slug is left as it is). The slug "
        f"{SYSTEM_TENANT_SLUG!r} is reserved: TraceLedger creates that tenant itself."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="letters, digits, - and _; at most 64 characters")
        parser.add_argument(
            "--name",
            default="",
            help=f"display name, at most {TENANT_NAME_MAX_LENGTH} characters (default: the slug)",
        )

    def handle(self, *args, slug: str, name: str, **options):
        try:
            tenant, created = tenant_provision(slug=slug, name=name)
        except ValidationError as exc:
            # Each bad field named on the one line; a slug is short enough to repeat, a name not.
            problems = []
            for field, messages in exc.message_dict.items():
                shown = f"slug {slug!r}" if field == "slug" else field
                problems.append(f"invalid {shown}: {' '.join(messages)}")
            raise CommandError("; ".join(problems)) from exc
        verb = "created" if created else "exists already"
        self.stdout.write(f"tenant {tenant.slug} ({tenant.name}) {verb}")
