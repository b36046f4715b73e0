"""Reads of audit events. Tenant scoping lives here and nowhere else.

Rules (ARCHITECTURE §3: "every read is scoped to the caller's tenant; a superuser may pass
``tenant=``"):

- A tenant's key or user always reads its own tenant. Passing ``tenant=`` with its own slug is
  allowed (harmless); passing any other slug is refused with 403 (``PermissionDenied``), never
  silently ignored, so that a caller who believes they are reading tenant B is told they are
  not. Whether tenant B exists is not revealed: the answer is the same 403 for any other slug.
- A superuser passing ``tenant=`` reads that tenant; an unknown slug is a 400 naming ``tenant``.
- A superuser without ``tenant=`` reads every tenant (the admin's cross-tenant view and
  ``GET /audit-events/{id}``, where the id alone is unambiguous). The list, search and export
  endpoints pass ``required=True`` instead: a person's read is recorded as an
  audit event *of the tenant read* (PCI DSS 10.2.1.3), so it must name exactly one tenant.
"""

from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Min, QuerySet, Sum
from rest_framework.exceptions import ValidationError

from accounts.models import Tenant
from accounts.principal import Principal
from audit.metrics_read import EVENT_CACHE
from audit.models import AuditEvent, OutboxMessage


def read_tenant_id(
    *, principal: Principal, tenant_slug: str | None = None, required: bool = False
) -> int | None:
    """The id of the tenant a read is scoped to, or None for a superuser's read of all tenants.

    Raises ``PermissionDenied`` (403) for another tenant's slug, ``ValidationError`` (400,
    field ``tenant``) for a superuser's unknown slug, or a missing one when ``required``.
    A tenant's own read without ``tenant=`` costs no query.
    """
    tenant_slug = (tenant_slug or "").strip() or None
    if principal.is_superuser:
        if tenant_slug is None:
            if required:
                raise ValidationError(
                    {"tenant": ["A superuser must name the tenant (tenant=<slug>)."]}
                )
            return None
        tenant_id = Tenant.objects.filter(slug=tenant_slug).values_list("pk", flat=True).first()
        if tenant_id is None:
            raise ValidationError({"tenant": [f"Unknown tenant {tenant_slug!r}."]})
        return tenant_id

    if principal.tenant_id is None:  # defensive: only superusers lack a tenant
        raise PermissionDenied("This credential is not bound to a tenant.")
    if tenant_slug is not None:
        own = Tenant.objects.filter(pk=principal.tenant_id).values_list("slug", flat=True).first()
        if own != tenant_slug:
            # Naming the caller's own slug gives nothing away and says what to send instead
            # (slugs are lower case: "Acme" is not "acme").
            raise PermissionDenied(
                f"You may only use your own tenant's events: tenant={own}, or leave it out."
            )
    return principal.tenant_id


def event_queryset(
    *, principal: Principal, tenant_slug: str | None = None, required: bool = False
) -> QuerySet[AuditEvent]:
    """Every event the principal may read, newest first, with the tenant joined in.

    The one entry point for reading events (API list/detail/export, search, admin): filters
    and pagination narrow this queryset, never widen it.
    """
    tenant_id = read_tenant_id(principal=principal, tenant_slug=tenant_slug, required=required)
    queryset = AuditEvent.objects.select_related("tenant").order_by("-occurred_at", "-id")
    if tenant_id is not None:
        queryset = queryset.filter(tenant_id=tenant_id)
    return queryset


# --- detail: cache-aside in Redis ---------------------------------------------------------
# Events are immutable (the table refuses UPDATE), so a cached document is never stale; the
# only removal is a retention purge, which leaves a per-tenant "purged through sequence N"
# mark (``event_cache_purged``) that every cache hit is checked against: a purge may remove
# millions of events, too many to delete one key at a time. The key carries the reader's
# tenant scope, so an entry written for tenant A is never even looked up for B.
EVENT_CACHE_VERSION = 1


def event_cache_key(*, tenant_id: int | None, event_id) -> str:
    scope = "all" if tenant_id is None else str(tenant_id)
    return f"audit:event:v{EVENT_CACHE_VERSION}:{scope}:{event_id}"


def _purge_mark_key(tenant_id: int) -> str:
    return f"audit:event:v{EVENT_CACHE_VERSION}:purged-through:{tenant_id}"


def event_cache_purged(*, tenant_id: int, through_sequence: int) -> None:
    """After a purge commits: cached documents of sequences ≤ ``through_sequence`` are dead.
    Kept as long as a cached document lives, so every one cached before the purge is covered."""
    cache.set(
        _purge_mark_key(tenant_id), through_sequence, timeout=settings.TRACELEDGER_EVENT_CACHE_TTL
    )


def _cached_document(*, key: str, tenant_id: int | None) -> dict | None:
    """The cached entry unless its event was purged since (one round trip when the reader's
    tenant is known, two for a cross-tenant reader)."""
    if tenant_id is not None:
        found = cache.get_many([key, _purge_mark_key(tenant_id)])
        entry, purged = found.get(key), found.get(_purge_mark_key(tenant_id))
    else:
        entry = cache.get(key)
        purged = None if entry is None else cache.get(_purge_mark_key(entry["tenant_id"]))
    if entry is not None and purged is not None and entry["document"]["sequence"] <= purged:
        cache.delete(key)
        return None
    return entry


@dataclass(frozen=True)
class EventRead:
    document: dict  # the detail document (``event_document``)
    tenant_id: int  # the event's tenant, for the access record


def event_document_get(
    *, principal: Principal, event_id, tenant_slug: str | None = None
) -> EventRead:
    """One readable event's document, through the cache.

    ``AuditEvent.DoesNotExist`` for an unknown id *and* for another tenant's id: the caller
    answers 404 in both cases, so ids of other tenants are never confirmed. A Redis outage is
    a miss (django-redis ``IGNORE_EXCEPTIONS``), so the read falls through to PostgreSQL.
    """
    from audit.api.serializers import event_document, event_rows

    tenant_id = read_tenant_id(principal=principal, tenant_slug=tenant_slug)
    key = event_cache_key(tenant_id=tenant_id, event_id=event_id)
    cached = _cached_document(key=key, tenant_id=tenant_id)
    if cached is not None:
        EVENT_CACHE.labels(result="hit").inc()
        return EventRead(document=cached["document"], tenant_id=cached["tenant_id"])

    EVENT_CACHE.labels(result="miss").inc()
    queryset = AuditEvent.objects.filter(pk=event_id)
    if tenant_id is not None:
        queryset = queryset.filter(tenant_id=tenant_id)
    row = event_rows(queryset).first()
    if row is None:
        raise AuditEvent.DoesNotExist(f"no readable event {event_id}")
    document = event_document(row)
    cache.set(
        key,
        {"document": document, "tenant_id": row["tenant_id"]},
        timeout=settings.TRACELEDGER_EVENT_CACHE_TTL,
    )
    return EventRead(document=document, tenant_id=row["tenant_id"])


def outbox_backlog(queryset: QuerySet[OutboxMessage] | None = None) -> dict:
    """``{messages, events, oldest}`` waiting in the outbox (of ``queryset``, e.g. a tenant's)."""
    queryset = OutboxMessage.objects.all() if queryset is None else queryset
    totals = queryset.aggregate(
        messages=Count("pk"), events=Sum("event_count"), oldest=Min("created_at")
    )
    totals["events"] = totals["events"] or 0
    return totals
