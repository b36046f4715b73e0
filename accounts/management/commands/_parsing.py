"""Argument parsing shared by the accounts commands."""

from datetime import UTC, datetime, time

from django.core.management.base import CommandError

from accounts.models import Tenant
from accounts.selectors import tenant_get_by_slug


def parse_expiry(value: str | None) -> datetime | None:
    """``2027-01-31`` (midnight UTC) or a full ISO 8601 timestamp (UTC when naive)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(
            f"--expires {value!r} is not an ISO date or timestamp (e.g. 2027-01-31)"
        ) from exc
    if len(value) == 10:  # a bare date
        parsed = datetime.combine(parsed.date(), time.min)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def require_tenant(slug: str) -> Tenant:
    tenant = tenant_get_by_slug(slug=slug)
    if tenant is None:
        raise CommandError(f"no tenant {slug!r} (create it with manage.py create_tenant {slug})")
    return tenant
