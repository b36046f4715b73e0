"""Which tenant(s) an admin export read, so that each is recorded as ``audit_log.export``.

The read side's ``access_record`` records an access as an event *of the tenant read*. A
tenant's staff always read their own tenant. A superuser's export must therefore be
attributable: filtered to one tenant, or a selection whose (few) tenants are looked up;
an unfiltered export across every tenant is refused rather than recorded nowhere.
"""

from django.http import HttpRequest

from accounts.principal import principal_for_user
from audit.services.access_log import EXPORT, access_record


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
