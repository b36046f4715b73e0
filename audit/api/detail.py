"""GET /api/v1/audit-events/{id}: one event, cache-aside in Redis."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from accounts.permissions import CanRead
from accounts.principal import get_principal
from audit.api.serializers import AuditEventOutputSerializer
from audit.filters import TENANT_PARAMETER, reject_unknown_params
from audit.metrics_read import READ_LATENCY
from audit.models import AuditEvent
from audit.selectors import event_document_get
from audit.services.access_log import READ, access_record
from traceledger.api.responses import NOT_FOUND, READ_ERRORS


class AuditEventDetailView(GenericAPIView):
    permission_classes = [IsAuthenticated, CanRead]
    serializer_class = AuditEventOutputSerializer
    filter_backends: list = []

    @extend_schema(
        operation_id="audit_events_retrieve",
        summary="One event",
        description=(
            "The stored event. Another tenant's id answers 404, exactly like an unknown id. "
            "Served from Redis after the first read (events are immutable); without Redis it "
            "is read from PostgreSQL. A person's read is recorded as `audit_log.read`."
        ),
        parameters=[
            # The route takes either case (audit/api/urls.py); a UUID all the same.
            OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH),
            TENANT_PARAMETER,
        ],
        responses={200: AuditEventOutputSerializer, **READ_ERRORS, **NOT_FOUND},
    )
    def get(self, request, pk):
        with READ_LATENCY.labels(endpoint="detail").time():
            reject_unknown_params(request.query_params, paging=False, filters=False)
            principal = get_principal(request)
            try:
                read = event_document_get(
                    principal=principal,
                    event_id=pk,
                    tenant_slug=request.query_params.get("tenant"),
                )
            except AuditEvent.DoesNotExist:
                raise NotFound("No such event.") from None
            access_record(
                principal=principal,
                action=READ,
                tenant_id=read.tenant_id,
                filters={"id": str(pk)},
                endpoint="detail",
                target_id=str(pk),
                target_type="audit_event",
            )
            return Response(read.document)
