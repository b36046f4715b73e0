"""Demo data for `make run`: a tenant, a superuser and an API key, printed once."""

import os
import secrets

from django.core.management.base import BaseCommand

from accounts.models import ApiKey, User
from accounts.services import api_key_create, tenant_get_or_create


class Command(BaseCommand):
    help = "Creates the demo tenant, an admin superuser and an ingest+read API key (idempotent)."

    def handle(self, *args, **options):
        tenant, _ = tenant_get_or_create(slug="demo", name="Demo tenant")
        username = os.environ.get("TRACELEDGER_DEMO_ADMIN", "admin")
        # A fresh password every run, so the one printed below always works.
        password = os.environ.get("TRACELEDGER_DEMO_PASSWORD") or secrets.token_urlsafe(12)
        user = User.objects.filter(username=username).first()
        if user is None:
            User.objects.create_superuser(username=username, email="", password=password)
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
        key_line = "(unchanged; create another with manage.py create_api_key)"
        if not ApiKey.objects.filter(tenant=tenant, name="demo", revoked=False).exists():
            _, key = api_key_create(tenant=tenant, name="demo", scopes=["ingest", "read"])
            key_line = key
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "TraceLedger demo",
                    f"  tenant:   {tenant.slug}",
                    f"  admin:    http://localhost:8000/admin/  user {username!r} "
                    f"password {password!r}",
                    f"  API key:  {key_line}",
                    "  try:      curl -H 'Authorization: Api-Key <key>' "
                    "http://localhost:8000/api/v1/audit-events",
                    "",
                ]
            )
        )
