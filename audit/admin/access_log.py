"""Admin reads and exports of the trail, recorded like the API's (``audit_log.*`` events).

A person browsing the admin reads the trail as much as one calling the API: each list page
(``audit_log.read``, or ``audit_log.search`` with a search term), event page and export
(``audit_log.export``) is recorded in the trail of the tenant read, through the read side's
``access_record``.

The read side's ``access_record`` records an access as an event *of the tenant read*. A
tenant's staff always read their own tenant. A superuser's export must therefore be
attributable: filtered to one tenant, or a selection whose (few) tenants are looked up;
an unfiltered export across every tenant is refused rather than recorded nowhere.
"""

from django.http import HttpRequest

from accounts.principal import principal_for_user
from audit.services.access_log import EXPORT, READ, SEARCH, access_record


class ExportNotAttributable(Exception):
    """A superuser's export spans tenants that cannot be named cheaply."""


def export_tenant_ids(*, request: HttpRequest, queryset, scope: dict) -> list[int]:
    user = request.user
    if not user.is_superuser:
        return [user.tenant_id]
    # An action posts to the changelist's own URL, so its filters are in GET too.
    tenant = request.GET.get("tenant", "")
    if tenant and tenant.isdigit():
        return [int(tenant)]
    if scope.get("selection") == "selected":
        # At most one page of selected rows: a cheap DISTINCT through the primary key.
        return sorted(set(queryset.values_list("tenant_id", flat=True).order_by()))
    raise ExportNotAttributable(
        "Filter by one tenant first: every export is recorded in the audit trail of the "
        "tenant whose events it contains."
    )


def export_record(*, request: HttpRequest, queryset, fmt: str, scope: dict) -> None:
    """Record the export in each tenant read; raises ExportNotAttributable first if unknown."""
    principal = principal_for_user(request.user)
    filters = {"format": fmt, **scope}
    for tenant_id in export_tenant_ids(request=request, queryset=queryset, scope=scope):
        access_record(
            principal=principal,
            action=EXPORT,
            tenant_id=tenant_id,
            filters=filters,
            endpoint="admin",
            description=f"{principal.name} exported events from the admin as {fmt}",
        )


# Query parameters that only change the view of the same rows.
_VIEW_ONLY_PARAMS = frozenset({"o", "_changelist_filters"})


def list_read_record(*, request: HttpRequest, changelist) -> None:
    """Record one changelist page: the filters and search used, in each tenant shown."""
    principal = principal_for_user(request.user)
    filters = {k: v for k, v in request.GET.items() if k not in _VIEW_ONLY_PARAMS}
    if request.user.is_superuser:
        # The rows on screen (one page, already fetched for rendering) name the tenants read.
        tenant_ids = sorted({event.tenant_id for event in changelist.result_list})
    else:
        tenant_ids = [request.user.tenant_id]
    for tenant_id in tenant_ids:
        access_record(
            principal=principal,
            action=SEARCH if changelist.query else READ,
            tenant_id=tenant_id,
            filters=filters,
            endpoint="admin-list",
        )


def event_read_record(*, request: HttpRequest, event) -> None:
    """Record one event page."""
    access_record(
        principal=principal_for_user(request.user),
        action=READ,
        tenant_id=event.tenant_id,
        filters={"id": str(event.pk)},
        endpoint="admin-detail",
        target_id=str(event.pk),
        target_type="audit_event",
    )
