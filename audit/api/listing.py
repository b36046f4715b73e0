"""GET /api/v1/audit-events (owned by the read work). Provides ``EventListMixin.get``."""

from drf_spectacular.utils import extend_schema
from rest_framework.mixins import ListModelMixin

from accounts.principal import get_principal
from audit.api.pagination import EventCursorPagination
from audit.api.serializers import AuditEventOutputSerializer
from audit.filters import (
    TENANT_PARAMETER,
    AuditEventFilterSet,
    filter_openapi_parameters,
    reject_unknown_params,
    used_filters,
)
from audit.metrics_read import READ_LATENCY
from audit.models import AuditEvent
from audit.selectors import event_queryset, read_tenant_id
from audit.services.access_log import READ, access_record
from traceledger.api.responses import READ_ERRORS


class EventListMixin(ListModelMixin):
    """Filtered (``AuditEventFilterSet``), newest first, keyset-paginated event list."""

    filterset_class = AuditEventFilterSet
    pagination_class = EventCursorPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no caller
            return AuditEvent.objects.none()
        principal = get_principal(self.request)
        return event_queryset(
            principal=principal, tenant_slug=self.request.query_params.get("tenant")
        )

    def paginate_queryset(self, queryset):
        # Kept for the access record: a superuser's read of every tenant is recorded in the
        # trail of each tenant it showed.
        self.shown_events = super().paginate_queryset(queryset) or []
        return self.shown_events

    @extend_schema(
        operation_id="audit_events_list",
        summary="List events, newest first",
        description=(
            "Filtered, cursor-paginated list of the caller's tenant's events, newest first "
            "(by occurred_at, then id). Follow `next` until it is null; no total count is "
            "computed. `occurred_after` is inclusive, `occurred_before` exclusive; `action` "
            "ending in `*` is a prefix match. Unknown parameters are a 400. A person's read "
            "is recorded as an `audit_log.read` event of the tenant (a superuser's read of "
            "every tenant: of each tenant whose events the page shows)."
        ),
        # The filters' own, with limits, over the ones drf-spectacular derives without them.
        parameters=[TENANT_PARAMETER, *filter_openapi_parameters()],
        responses={200: AuditEventOutputSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request, *args, **kwargs):
        with READ_LATENCY.labels(endpoint="list").time():
            reject_unknown_params(request.query_params)
            principal = get_principal(request)
            tenant_id = read_tenant_id(
                principal=principal, tenant_slug=request.query_params.get("tenant")
            )
            response = self.list(request, *args, **kwargs)
            access_record(
                principal=principal,
                action=READ,
                tenant_id=tenant_id,
                shown=(event.tenant_id for event in self.shown_events),
                filters=used_filters(request.query_params),
                endpoint="list",
            )
            return response

    def get_serializer_class(self):
        # POST's body is validated by msgspec (audit/validation.py); its DRF twin only
        # describes the fields, which is what OPTIONS (DRF's metadata) asks for.
        if self.request is not None and self.request.method == "POST":
            from audit.api.ingest_schema import AuditEventInputSerializer

            return AuditEventInputSerializer
        return AuditEventOutputSerializer
