"""manage.py create_api_key --tenant SLUG --name NAME --scopes ingest,read [--expires DATE]."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.management.commands._parsing import require_tenant
from accounts.services import api_key_create
from traceledger.command_args import actor_of, add_actor_argument, parse_moment


class Command(BaseCommand):
    help = (
        "Creates an API key for a tenant and prints it ONCE, alone on the last line of "
        "standard output; only its hash is stored."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--name", required=True, help="what uses the key (≤ 50 characters)")
        parser.add_argument(
            "--scopes", required=True, help="comma-separated: ingest, read, or ingest,read"
        )
        parser.add_argument(
            "--expires", default=None, help="ISO date or timestamp, e.g. 2027-01-31 (UTC)"
        )
        add_actor_argument(parser, doing="creating it", trail="the tenant's trail")

    def handle(
        self,
        *args,
        tenant: str,
        name: str,
        scopes: str,
        expires: str | None,
        actor: str | None = None,
        **options,
    ):
        tenant_obj = require_tenant(tenant)
        scope_list = [s.strip() for s in scopes.split(",") if s.strip()]
        expiry_date = parse_moment(expires, option="--expires") if expires else None
        try:
            api_key, key = api_key_create(
                tenant=tenant_obj,
                name=name,
                scopes=scope_list,
                expiry_date=expiry_date,
                actor=actor_of(actor),
            )
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
            ) from exc
        expiry = api_key.expiry_date.isoformat() if api_key.expiry_date else "never"
        # Details go to stderr so that `KEY=$(manage.py create_api_key ...)` captures the key.
        self.stderr.write(
            f"API key {api_key.prefix} for tenant {tenant_obj.slug}, scopes "
            f"{','.join(api_key.scopes)}, expires {expiry}. It is shown only now:"
        )
        self.stdout.write(key)
