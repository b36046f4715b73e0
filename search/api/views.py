"""GET /api/v1/audit-events/search: full-text search plus the list filters."""

import base64
import binascii
import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import CanRead
from accounts.principal import get_principal
from audit.api.pagination import EventCursorPagination, page_size_schema
from audit.api.serializers import AuditEventOutputSerializer, event_document
from audit.filters import (
    TENANT_PARAMETER,
    AuditEventFilterSet,
    filter_openapi_parameters,
    reject_unknown_params,
    used_filters,
)
from audit.metrics_read import READ_LATENCY
from audit.selectors import event_queryset, read_tenant_id
from audit.services.access_log import SEARCH, access_record
from search.backends.base import InvalidCursor, InvalidQuery, SearchRequest
from search.selectors import events_search
from traceledger.api.responses import READ_ERRORS

MAX_QUERY_LENGTH = 512


class SearchInputSerializer(serializers.Serializer):
    q = serializers.CharField(max_length=MAX_QUERY_LENGTH, trim_whitespace=True)


def cursor_encode(cursor: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(cursor, separators=(",", ":")).encode()).decode()


def cursor_decode(raw: str) -> dict:
    try:
        cursor = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (binascii.Error, ValueError, UnicodeError, RecursionError):
        raise ValidationError({"cursor": ["Invalid cursor."]}) from None
    if not isinstance(cursor, dict) or not cursor:
        raise ValidationError({"cursor": ["Invalid cursor."]})
    return cursor


class AuditEventSearchView(APIView):
    permission_classes = [IsAuthenticated, CanRead]

    @extend_schema(
        operation_id="audit_events_search",
        summary="Full-text search of events",
        description=(
            'Words, "quoted phrases", `OR` and `-exclusions` (PostgreSQL '
            "`websearch_to_tsquery` syntax, the same on Elasticsearch), plus every list "
            "filter. Best match first, newest first among equals. Follow `next` until it is "
            "null. `backend` names the engine that answered; `degraded` is true when "
            "Elasticsearch was unavailable and PostgreSQL answered instead; a search that began "
            "so pages on from PostgreSQL, while a cursor of Elasticsearch is refused by "
            "PostgreSQL (start again). A person's search is recorded "
            "as an `audit_log.search` event of the tenant (a superuser's search of every "
            "tenant: of each tenant whose events the page shows)."
        ),
        parameters=[
            OpenApiParameter(
                "q",
                # As SearchInputSerializer reads it: blanks alone are no search text.
                {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_LENGTH, "pattern": r"\S"},
                required=True,
                description="Search text.",
            ),
            *filter_openapi_parameters(),
            OpenApiParameter(
                "page_size",
                page_size_schema(),
                description=EventCursorPagination.page_size_query_description,
            ),
            OpenApiParameter(
                "cursor",
                OpenApiTypes.STR,
                description=EventCursorPagination.cursor_query_description,
            ),
            TENANT_PARAMETER,
        ],
        responses={
            200: inline_serializer(
                "AuditEventSearchPage",
                {
                    "backend": serializers.ChoiceField(choices=["postgresql", "elasticsearch"]),
                    "degraded": serializers.BooleanField(),
                    "next": serializers.URLField(allow_null=True),
                    "results": AuditEventOutputSerializer(many=True),
                },
            ),
            **READ_ERRORS,
        },
    )
    def get(self, request):
        with READ_LATENCY.labels(endpoint="search").time():
            return self._search(request)

    def _search(self, request):
        params = request.query_params
        reject_unknown_params(params, extra={"q"})
        principal = get_principal(request)
        tenant_slug = params.get("tenant")
        tenant_id = read_tenant_id(principal=principal, tenant_slug=tenant_slug)
        # Absent is "required", not "may not be blank" (contract QA): it was never sent.
        query = SearchInputSerializer(data={"q": params["q"]} if "q" in params else {})
        query.is_valid(raise_exception=True)
        filterset = AuditEventFilterSet(
            data=params,
            queryset=event_queryset(principal=principal, tenant_slug=tenant_slug),
        )
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        page_size = EventCursorPagination().get_page_size(request)
        cursor = cursor_decode(params["cursor"]) if params.get("cursor") else None
        search_request = SearchRequest(
            tenant_id=tenant_id,
            q=query.validated_data["q"],
            queryset=filterset.qs,
            filters=filterset.form.cleaned_data,
            page_size=page_size,
            cursor=cursor,
        )
        try:
            page = events_search(request=search_request)
        except InvalidCursor as exc:
            raise ValidationError({"cursor": [str(exc)]}) from None
        except InvalidQuery as exc:
            raise ValidationError({"q": exc.messages}) from None

        next_url = None
        if page.next_cursor:
            next_params = params.copy()
            next_params["cursor"] = cursor_encode(page.next_cursor)
            next_url = request.build_absolute_uri(f"{request.path}?{next_params.urlencode()}")
        access_record(
            principal=principal,
            action=SEARCH,
            tenant_id=tenant_id,
            shown=(event.tenant_id for event in page.events),
            filters={**used_filters(params), "q": search_request.q},
            endpoint="search",
        )
        return Response(
            {
                "backend": page.backend,
                "degraded": page.degraded,
                "next": next_url,
                "results": [event_document(event) for event in page.events],
            }
        )
