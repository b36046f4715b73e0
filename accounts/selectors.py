"""Reads for accounts: who is calling (API keys), and tenant-scoped querysets of users/keys."""

import logging
import time

from django.conf import settings
from django.db import DatabaseError
from django.db.models import QuerySet

from accounts import keycache
from accounts.models import SYSTEM_TENANT_SLUG, ApiKey, Scope, Tenant, User
from accounts.principal import Principal

logger = logging.getLogger(__name__)


def _principal_from_entry(entry: dict, now: float) -> Principal | None:
    if entry["expires_at"] is not None and entry["expires_at"] <= now:
        return None
    return Principal(
        kind="api_key",
        name=entry["name"],
        tenant_id=entry["tenant_id"],
        scopes=frozenset(entry["scopes"]),
        api_key_id=entry["prefix"],
    )


def _principal_from_stale_entry(entry: dict, now: float) -> Principal | None:
    # Once per request; ``LOGGING`` throttles it to one line per 30 s that counts the rest.
    logger.warning(
        "database unreachable: authenticating an API key from its cached entry",
        extra={"api_key_prefix": entry["prefix"]},
    )
    return _principal_from_entry(entry, now)


def _database_answered() -> None:
    if keycache.database_answered():
        logger.info("database reachable again: API keys are checked against it")


def api_key_principal_get(*, key: str, before_lookup=None) -> Principal | None:
    """The caller behind a plain API key, or None when the key is unknown, revoked or expired.

    Served from the Redis cache while the entry is fresh; re-checked against PostgreSQL
    after that; a stale entry is used only when PostgreSQL is unreachable, and for
    ``keycache.DATABASE_RETRY_AFTER`` seconds after it failed without asking it again.
    Raises ``DatabaseError`` when neither the cache nor PostgreSQL can answer.
    ``before_lookup()`` runs before PostgreSQL is asked about a key without a cached entry
    (it may raise to refuse the request: the failed-key limit).
    """
    now = time.time()
    entry = keycache.get(key=key)
    if entry is not None and now - entry["checked_at"] < settings.TRACELEDGER_API_KEY_CACHE_SECONDS:
        return _principal_from_entry(entry, now)
    if entry is not None and keycache.database_skipped():
        # PostgreSQL failed moments ago: do not wait out its connect timeout again.
        return _principal_from_stale_entry(entry, now)
    if entry is None and before_lookup is not None:
        before_lookup()
    try:
        api_key = ApiKey.objects.get_from_key(key)
    except ApiKey.DoesNotExist:
        _database_answered()
        if entry is not None:
            keycache.forget(prefix=entry["prefix"])
        return None
    except DatabaseError:
        keycache.database_failed()
        if entry is None:
            raise
        return _principal_from_stale_entry(entry, now)
    _database_answered()
    if api_key.has_expired or api_key.tenant.slug == SYSTEM_TENANT_SLUG:
        return None
    entry = {
        "prefix": api_key.prefix,
        "name": api_key.name,
        "tenant_id": api_key.tenant_id,
        # What a key may hold, whatever the row says: the forms offer only these, but a
        # row edited by SQL to hold "admin" let a key create users, and a NULL was a 500.
        "scopes": sorted(set(api_key.scopes or ()) & set(Scope.values)),
        "expires_at": api_key.expiry_date.timestamp() if api_key.expiry_date else None,
        "checked_at": now,
    }
    keycache.put(key=key, entry=entry)
    return _principal_from_entry(entry, now)


def tenant_get(*, tenant_id: int) -> Tenant:
    return Tenant.objects.get(pk=tenant_id)


def tenant_get_by_slug(*, slug: str) -> Tenant | None:
    return Tenant.objects.filter(slug=slug).first()


def user_list_for(*, user) -> QuerySet[User]:
    """Users a person may see: everyone for a superuser; otherwise their own tenant's, never
    a superuser among them (a superuser may carry a tenant: its admin could otherwise set
    that superuser's password and become one)."""
    queryset = User.objects.select_related("tenant")
    if user.is_superuser:
        return queryset
    if not user.tenant_id:
        return queryset.none()
    return queryset.filter(tenant_id=user.tenant_id, is_superuser=False)


def api_key_list_for(*, user) -> QuerySet[ApiKey]:
    queryset = ApiKey.objects.select_related("tenant")
    if user.is_superuser:
        return queryset
    return queryset.filter(tenant_id=user.tenant_id) if user.tenant_id else queryset.none()
