"""Demo data for `make run`: a tenant, a superuser and an API key, printed every run."""

import os
import secrets

from django.core.management.base import BaseCommand, CommandError

from accounts.models import ApiKey, User
from accounts.services import (
    api_key_create,
    api_key_revoke,
    superuser_create,
    tenant_get_or_create,
    user_password_set,
)


class Command(BaseCommand):
    help = (
        "Creates the demo tenant and an admin superuser (idempotent), then gives the admin a "
        "fresh password and the tenant a fresh ingest+read 'demo' API key, revoking the old one."
    )

    def handle(self, *args, **options):
        tenant, _ = tenant_get_or_create(slug="demo", name="Demo tenant")
        username = os.environ.get("TRACELEDGER_DEMO_ADMIN", "admin")
        # A fresh password every run, so the one printed below always works.
        password = os.environ.get("TRACELEDGER_DEMO_PASSWORD") or secrets.token_urlsafe(12)
        user = User.objects.filter(username__iexact=username).first()
        if user is not None and not user.is_superuser:
            # Resetting an ordinary account's password to a printed one would hand it over.
            raise CommandError(
                f"user {user.username!r} exists and is not a superuser: set "
                "TRACELEDGER_DEMO_ADMIN to another name"
            )
        # Through the services: the superuser's creation and each new password are recorded
        # in the system tenant's trail like any other account change.
        if user is None:
            superuser_create(username=username, password=password)
        else:
            user_password_set(user=user, password=password)
        # Only the hash of a key is stored, so a key printed by an earlier run cannot be
        # shown again: replace it, as the password above.
        for old in ApiKey.objects.filter(tenant=tenant, name="demo", revoked=False):
            api_key_revoke(api_key=old)
        _, key_line = api_key_create(tenant=tenant, name="demo", scopes=["ingest", "read"])
        # make run passes the port it serves on (PORT, default 8000).
        site = f"http://localhost:{os.environ.get('PORT', '8000')}"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "TraceLedger demo",
                    f"  tenant:   {tenant.slug}",
                    f"  admin:    {site}/admin/  user {username!r} password {password!r}",
                    f"  API key:  {key_line}",
                    "  try:      curl -H 'Authorization: Api-Key <key>' "
                    f"{site}/api/v1/audit-events",
                    "",
                ]
            )
        )
