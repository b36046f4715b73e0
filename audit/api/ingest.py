"""POST /api/v1/audit-events (owned by the ingest work). Provides ``IngestMixin.post``.

The view stays thin: read the raw body (no DRF parser: msgspec decodes and validates in one
pass, see ``audit.validation``), resolve the tenant, hand the events to
``events_submit`` and answer 202 (or 429 first, while the ingest queue is over its backlog
limit: ``ingest_admit``, in the view's ``check_throttles``, before the rate limit counts the
request). Authentication, permissions and throttling (rate limits,
``AuditEventCollectionView.get_throttles``) run before ``post`` as for any DRF view.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response

from accounts.models import SYSTEM_TENANT_SLUG
from accounts.principal import get_principal
from audit.api.ingest_schema import INGEST_REQUEST, IngestAcceptedSerializer
from audit.filters import reject_unknown_params
from audit.selectors import read_tenant_id
from audit.services.submission import events_submit
from audit.validation import InvalidEvents, InvalidJSON, events_parse
from traceledger.api.parsers import charset_refuse, content_encoding_refuse
from traceledger.request_id import current_request_id

JSON_MEDIA_TYPES = frozenset({"application/json"})


class IngestMixin:
    @extend_schema(
        operation_id="audit_events_create",
        summary="Post one event or a list of up to 1,000",
        description=(
            "Validates the events, assigns each an `id` and `received_at`, and answers 202 "
            "once they are durable: confirmed by RabbitMQ, or committed to the outbox when the "
            "broker is down or slow. Unknown fields are refused. In a list, errors are keyed "
            'by the item\'s index (`error.fields` = `{"2": {"occurred_at": [...]}}`); a '
            "repeated `event_id` within one request is refused at the later index."
        ),
        request=INGEST_REQUEST,
        parameters=[
            OpenApiParameter(
                "tenant",
                OpenApiTypes.STR,
                description="Superusers only: the slug of the tenant the events belong to.",
            )
        ],
        responses={
            202: IngestAcceptedSerializer,
            400: OpenApiResponse(
                description="Invalid JSON, invalid fields, or a query parameter other than "
                "one `tenant`, each named; or a body that ended before its `Content-Length` "
                "or its last chunk (`incomplete_body`, the connection closed)."
            ),
            401: OpenApiResponse(description="No or invalid credentials."),
            403: OpenApiResponse(
                description="The credential lacks the `ingest` scope, or `tenant` names "
                "another tenant or the reserved `system` tenant."
            ),
            413: OpenApiResponse(
                description="The body is larger than the limit (5 MiB); the connection is "
                "closed (`Connection: close`)."
            ),
            415: OpenApiResponse(
                description="The body is not `application/json`, or is compressed "
                "(`Content-Encoding` other than `identity`, or a `Transfer-Encoding` such as "
                "`gzip, chunked`): send it uncompressed."
            ),
            429: OpenApiResponse(
                description="Rate limited, or the ingest queue is over its backlog limit "
                "(`error.code` `overloaded`); nothing was accepted. Retry after `Retry-After` "
                "seconds with the same `event_id`s."
            ),
            503: OpenApiResponse(
                description="Nothing was accepted: neither RabbitMQ nor PostgreSQL took the "
                "events, or the API key could be checked neither in Redis nor in PostgreSQL. "
                "Retry after `Retry-After` seconds with the same `event_id`s."
            ),
        },
    )
    def post(self, request, *args, **kwargs):
        # The backlog's refusal (ingest_admit) came before the rate limit, in the view's
        # check_throttles: it is how the workers' backlog stays bounded.
        if request.META.get("QUERY_STRING"):  # the usual POST has none: nothing to parse
            # Only tenant=, once: anything else would be silently ignored.
            reject_unknown_params(request.query_params, paging=False, filters=False)
        media_type = request.content_type.split(";", 1)[0].strip().lower()
        if media_type not in JSON_MEDIA_TYPES:
            # DRF's own message names what came, not what to send.
            raise exceptions.UnsupportedMediaType(
                media_type or "(none)",
                detail=f"Unsupported media type {media_type or '(none)'!r}: send the events as "
                "JSON with `Content-Type: application/json`.",
            )
        # gzip and the like: read as plain bytes, a confusing 400 (traceledger.api.parsers).
        content_encoding_refuse(request.META)
        charset_refuse(request.META)  # the body is read as UTF-8, whatever it is labelled
        # Over DATA_UPLOAD_MAX_MEMORY_SIZE: RequestDataTooBig, a 413 for every endpoint
        # (traceledger.api.exceptions).
        body = request.body
        # As for reads: a superuser names the tenant; another tenant's slug is a 403.
        tenant_slug = request.query_params.get("tenant")
        if (tenant_slug or "").strip() == SYSTEM_TENANT_SLUG:
            # TraceLedger's own records (operators' actions): posting there would forge them.
            raise exceptions.PermissionDenied(
                f"The {SYSTEM_TENANT_SLUG!r} tenant holds TraceLedger's own records; "
                "events cannot be posted into it."
            )
        principal = get_principal(request)
        tenant_id = read_tenant_id(principal=principal, tenant_slug=tenant_slug, required=True)
        try:
            # The tenant makes the ids: the same event_id always gets the same one.
            events, _ = events_parse(body, tenant_id=tenant_id)
        except InvalidJSON as exc:
            raise exceptions.ParseError(str(exc)) from None
        except InvalidEvents as exc:
            raise exceptions.ValidationError(exc.fields) from None
        # IngestUnavailable → 503 with Retry-After, in the API's exception handler.
        events_submit(
            tenant_id=tenant_id,
            events=events,
            request_id=current_request_id() or None,
            submitted_by=principal.submitter,
        )
        return Response(
            {"accepted": len(events), "ids": [event["id"] for event in events]},
            status=status.HTTP_202_ACCEPTED,
        )
