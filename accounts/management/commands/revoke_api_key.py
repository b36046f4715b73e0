"""manage.py revoke_api_key PREFIX — irreversible."""

from django.core.management.base import BaseCommand, CommandError

from accounts.models import ApiKey
from accounts.services import api_key_revoke
from traceledger.command_args import actor_of, add_actor_argument


class Command(BaseCommand):
    help = (
        "Revokes an API key by its prefix (the part before the dot, shown in the admin). "
        "It stops working at once; this cannot be undone."
    )

    def add_arguments(self, parser):
        parser.add_argument("prefix", help="the key's 8-character prefix, or the whole key")
        add_actor_argument(parser, doing="revoking it", trail="the tenant's trail")

    def handle(self, *args, prefix: str, actor: str | None = None, **options):
        prefix = prefix.partition(".")[0]
        api_key = ApiKey.objects.filter(prefix=prefix).first()
        if api_key is None:
            raise CommandError(f"no API key with prefix {prefix!r}")
        if api_key_revoke(api_key=api_key, actor=actor_of(actor)):
            self.stdout.write(f"API key {prefix} ({api_key.name}) revoked")
        else:
            self.stdout.write(f"API key {prefix} ({api_key.name}) was revoked already")
