"""GET /api/v1/audit-events/export?format=csv|jsonl: the list filters, streamed."""

from typing import NamedTuple

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import NotAcceptable, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import IsAuthenticated

from accounts.permissions import CanRead
from accounts.principal import get_principal
from accounts.ratelimits import HeavyReadRateLimit, ReadRateLimit
from audit.export_slots import export_rows_in_slot
from audit.exports import FORMATS, export_filename, export_rows
from audit.filters import (
    TENANT_PARAMETER,
    AuditEventFilterSet,
    filter_openapi_parameters,
    reject_unknown_params,
    used_filters,
)
from audit.metrics_read import READ_LATENCY
from audit.selectors import event_queryset, read_tenant_id
from audit.services.access_log import EXPORT, access_record
from traceledger.api.responses import READ_ERRORS


class ExportNegotiation(DefaultContentNegotiation):
    """``Accept`` against the chosen format's media type, not against the renderers.

    ``format`` here names the export format (DRF's ``?format=`` renderer override is off
    everywhere: ``URL_FORMAT_OVERRIDE`` in settings). The stream is no renderer's output, so
    DRF's negotiation over the renderers (JSON) would refuse ``Accept: text/csv``; ignoring
    ``Accept`` instead answered ``application/xml`` with a 200 CSV, where every other GET
    answers 406. DRF's own matching (``*/*``, ``text/*``, parameters, its header limits)
    decides, against the format's type; an unknown format is left to the view's 400. Errors
    render as JSON, as everywhere.
    """

    def select_renderer(self, request, renderers, format_suffix=None):
        fmt = request.query_params.get("format", "")
        if fmt in FORMATS:
            try:
                super().select_renderer(request, [_Stream(_media_type(fmt), fmt)])
            except NotAcceptable:
                raise NotAcceptable(
                    f"Could not satisfy the request Accept header: format={fmt} answers "
                    f"{_media_type(fmt)}."
                ) from None
        renderer = renderers[0]
        return renderer, renderer.media_type


def _media_type(fmt: str) -> str:
    """The export's media type, without parameters (``text/csv``, not its charset)."""
    return FORMATS[fmt][0].split(";")[0]


class _Stream(NamedTuple):
    """What DRF's negotiation reads of a renderer."""

    media_type: str
    format: str


class AuditEventExportView(GenericAPIView):
    permission_classes = [IsAuthenticated, CanRead]
    # The read limit, and a tighter one: each request may cost seconds of database time.
    throttle_classes = [ReadRateLimit, HeavyReadRateLimit]
    content_negotiation_class = ExportNegotiation
    filterset_class = AuditEventFilterSet
    pagination_class = None

    @extend_schema(
        operation_id="audit_events_export",
        summary="Export events as CSV or JSON Lines (streamed)",
        description=(
            "Every event matching the list filters, newest first, streamed in constant "
            "memory. CSV: a header row, `actor_*`/`target_*` columns, `metadata` as JSON. "
            "JSONL: one detail document per line (what `tools/verify_export.py` checks). "
            "Timestamps are ISO 8601 UTC with microseconds. Every export is recorded as an "
            "`audit_log.export` event of the tenant. `Accept` must admit the format's type "
            "(or be `*/*`): in Swagger UI, pick the response media type that matches `format`."
        ),
        parameters=[
            OpenApiParameter(
                "format",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                required=True,
                enum=sorted(FORMATS),
                description="csv or jsonl",
            ),
            TENANT_PARAMETER,
            *filter_openapi_parameters(),
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV file"),
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.STR, description="One JSON document per line"
            ),
            **READ_ERRORS,
            406: OpenApiResponse(
                description="`Accept` admits neither the format's type ("
                + ", ".join(f"`{_media_type(fmt)}` for {fmt}" for fmt in sorted(FORMATS))
                + ") nor `*/*`."
            ),
        },
    )
    def get(self, request):
        with READ_LATENCY.labels(endpoint="export").time():
            params = request.query_params
            reject_unknown_params(params, extra={"format"}, paging=False)
            fmt = params.get("format", "")
            if fmt not in FORMATS:
                raise ValidationError({"format": ["Choose csv or jsonl."]})
            principal = get_principal(request)
            tenant_id = read_tenant_id(
                principal=principal, tenant_slug=params.get("tenant"), required=True
            )
            queryset = self.filter_queryset(
                event_queryset(principal=principal, tenant_slug=params.get("tenant"), required=True)
            )
            # HEAD (a client checking the headers) sends no rows: nothing was exported.
            exporting = request.method != "HEAD"
            if not exporting:
                return self._response(iter(()), fmt=fmt, tenant_id=tenant_id)
            # A refused export (429, too many streaming) is no export: nothing recorded.
            rows = export_rows_in_slot(
                record=lambda: access_record(
                    principal=principal,
                    action=EXPORT,
                    tenant_id=tenant_id,
                    filters={**used_filters(params), "format": fmt},
                    endpoint="export",
                ),
                rows=lambda: export_rows(queryset, fmt),
                request_meta=request.META,
            )
            try:
                return self._response(rows, fmt=fmt, tenant_id=tenant_id)
            except BaseException:
                rows.close()
                raise

    @staticmethod
    def _response(rows, *, fmt: str, tenant_id: int) -> StreamingHttpResponse:
        content_type, extension = FORMATS[fmt]
        response = StreamingHttpResponse(rows, content_type=content_type)
        name = export_filename(tenant_ids=[tenant_id], extension=extension)
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        response["Cache-Control"] = "no-store"
        return response
