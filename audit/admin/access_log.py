"""Admin reads and exports of the trail, recorded like the API's (``audit_log.*`` events).

A person browsing the admin reads the trail as much as one calling the API: each list page
(``audit_log.read``, or ``audit_log.search`` with a search term), event page and export
(``audit_log.export``) is recorded in the trail of the tenant read, through the read side's
``access_record``.

The read side's ``access_record`` records an access as an event *of the tenant read*. A
tenant's staff always read their own tenant. A superuser's export must therefore be
attributable: filtered to one tenant, or a selection whose (few) tenants are looked up;
an unfiltered export across every tenant is refused rather than recorded nowhere. A
superuser's list or search that shows nothing is still a read (that nothing matched is
itself an answer): ``read_tenant_ids`` then names the tenant filtered to or, unfiltered,
the system tenant.
"""

from django.http import HttpRequest

from accounts.models import Tenant
from accounts.principal import principal_for_user
from audit.admin.list_filters import TenantFilter
from audit.services.access_log import EXPORT, READ, SEARCH, access_record


class ExportNotAttributable(Exception):
    """A superuser's export spans tenants that cannot be named cheaply."""


def _filtered_tenant_param(request: HttpRequest) -> str:
    # An action posts to the changelist's own URL, so its filters are in GET too.
    return request.GET.get(TenantFilter.parameter_name, "")


def read_tenant_ids(*, request: HttpRequest, shown) -> list[int | None]:
    """The tenants whose trails record a read of the event list: the one place that decides.

    Tenant staff read their own tenant. A superuser's read is recorded in the tenants of the
    events ``shown`` (tenant ids); when none was shown, in the tenant the list is filtered to,
    or under ``None`` (the system tenant's trail, as ``record_system_event`` takes it) when it
    is not filtered to one that exists: a search that found nothing must still be in a trail.
    """
    user = request.user
    if not user.is_superuser:
        return [user.tenant_id]
    tenant_ids = sorted(set(shown))
    if tenant_ids:
        return tenant_ids
    tenant = _filtered_tenant_param(request)
    # isdecimal, not isdigit: int() refuses "²", which isdigit accepts.
    if tenant.isdecimal() and Tenant.objects.filter(pk=int(tenant)).exists():
        return [int(tenant)]
    return [None]


def export_tenant_ids(
    *, request: HttpRequest, scope: dict, selected: dict[int, list[str]] | None
) -> list[int | None]:
    """``read_tenant_ids`` of an export (``selected``: a selection's ids by tenant); raises
    ExportNotAttributable for a superuser's export of an unfiltered list (its tenants could
    be every tenant)."""
    if not request.user.is_superuser or _filtered_tenant_param(request):
        return read_tenant_ids(request=request, shown=())
    if selected is not None:
        return read_tenant_ids(request=request, shown=selected)
    raise ExportNotAttributable(
        "Filter by one tenant first: every export is recorded in the audit trail of the "
        "tenant whose events it contains."
    )


def export_record(*, request: HttpRequest, queryset, fmt: str, scope: dict) -> list[int | None]:
    """Record the export in each tenant read (returned: ``export_tenant_ids``); raises
    ExportNotAttributable first if unknown.

    A selection's ids are recorded in their own tenant's trail only: a superuser's selection
    across tenants must not show one tenant's staff the ids of another's events (ids are
    derived from the tenant and the client's ``event_id``, so they would confirm guesses).
    """
    principal = principal_for_user(request.user)
    selected = _selected_ids_by_tenant(queryset, scope)
    tenant_ids = export_tenant_ids(request=request, scope=scope, selected=selected)
    for tenant_id in tenant_ids:
        tenant_scope = scope
        if selected is not None:
            tenant_scope = {**scope, "ids": selected.get(tenant_id, [])}
        access_record(
            principal=principal,
            action=EXPORT,
            tenant_id=tenant_id,
            filters={"format": fmt, **tenant_scope},
            endpoint="admin",
            description=f"{principal.name} exported events from the admin as {fmt}",
        )
    return tenant_ids


# A selection is one changelist page of checkboxes; the cap bounds what a hand-made POST
# makes the record hold (audit.services.record_parts spreads the ids over several events).
SELECTED_MAX = 1000


def _selected_ids_by_tenant(queryset, scope: dict) -> dict[int, list[str]] | None:
    """A selection's exported ids by tenant, read in one query through the primary key (at
    most one page of selected rows); None for an export of a filter."""
    if scope.get("selection") != "selected":
        return None
    selected: dict[int, list[str]] = {}
    for tenant_id, pk in queryset.order_by("pk").values_list("tenant_id", "pk")[:SELECTED_MAX]:
        selected.setdefault(tenant_id, []).append(str(pk))
    return selected


# Query parameters that only change the view of the same rows.
_VIEW_ONLY_PARAMS = frozenset({"o", "_changelist_filters"})


def list_read_record(*, request: HttpRequest, changelist) -> None:
    """Record one changelist page: the filters and search used, in each tenant shown."""
    principal = principal_for_user(request.user)
    filters = {k: v for k, v in request.GET.items() if k not in _VIEW_ONLY_PARAMS}
    # The rows on screen (one page, already fetched for rendering) name the tenants read.
    shown = {event.tenant_id for event in changelist.result_list}
    read = {
        "principal": principal,
        "action": SEARCH if changelist.query else READ,
        "filters": filters,
        "endpoint": "admin-list",
    }
    if request.user.is_superuser and shown and not _filtered_tenant_param(request):
        # A read of every tenant, as the API's: its search text and filters may name any
        # tenant's people, so they go to the system tenant's trail alone, and each tenant
        # shown records the read without them (regression QA: they went to each tenant's).
        access_record(tenant_id=None, shown=shown, **read)
        return
    for tenant_id in read_tenant_ids(request=request, shown=shown):
        access_record(tenant_id=tenant_id, **read)


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
