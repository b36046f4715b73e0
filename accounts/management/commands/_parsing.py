"""Argument parsing shared by the accounts commands."""

from django.core.management.base import CommandError

from accounts.models import SYSTEM_TENANT_SLUG, Tenant
from accounts.selectors import tenant_get_by_slug


def require_tenant(slug: str) -> Tenant:
    tenant = tenant_get_by_slug(slug=slug)
    if tenant is None and slug == SYSTEM_TENANT_SLUG:
        raise CommandError(f"{slug!r} is TraceLedger's own tenant: nobody may use it")
    if tenant is None and slug != slug.strip().lower():
        raise CommandError(
            f"no tenant {slug!r}: tenant slugs are lower case, without blanks "
            f"(did you mean {slug.strip().lower()!r}?)"
        )
    if tenant is None:
        raise CommandError(f"no tenant {slug!r} (create it with manage.py create_tenant {slug})")
    return tenant
