"""manage.py create_tenant SLUG [--name NAME] — idempotent."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.services import tenant_get_or_create


class Command(BaseCommand):
    help = "Creates a tenant (idempotent: an existing slug is left as it is)."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="letters, digits, - and _; at most 64 characters")
        parser.add_argument("--name", default="", help="display name (default: the slug)")

    def handle(self, *args, slug: str, name: str, **options):
        try:
            tenant, created = tenant_get_or_create(slug=slug, name=name)
        except ValidationError as exc:
            raise CommandError(f"invalid slug {slug!r}: {' '.join(exc.messages)}") from exc
        verb = "created" if created else "exists already"
        self.stdout.write(f"tenant {tenant.slug} ({tenant.name}) {verb}")
