"""Writes for tenants, users and API keys. The only place that changes these rows."""

from datetime import datetime

from django.db import transaction

from accounts.models import ApiKey, Scope, Tenant

VALID_SCOPES = frozenset(Scope.values)


def tenant_get_or_create(*, slug: str, name: str = "") -> tuple[Tenant, bool]:
    tenant, created = Tenant.objects.get_or_create(slug=slug, defaults={"name": name or slug})
    return tenant, created


@transaction.atomic
def api_key_create(
    *, tenant: Tenant, name: str, scopes: list[str], expiry_date: datetime | None = None
) -> tuple[ApiKey, str]:
    """Returns the key row and the plain key. The plain key is never stored."""
    unknown = set(scopes) - VALID_SCOPES
    if not scopes or unknown:
        raise ValueError(
            f"scopes must be a non-empty subset of {sorted(VALID_SCOPES)}, got {sorted(scopes)}"
        )
    api_key, key = ApiKey.objects.create_key(
        name=name, tenant=tenant, scopes=sorted(set(scopes)), expiry_date=expiry_date
    )
    return api_key, key
