"""Keyset (cursor) pagination on (occurred_at, id), newest first, without COUNT(*).

DRF's ``CursorPagination`` accepts an ordering tuple, but its cursor stores only the *first*
field's value and skips ties with an offset. Events share ``occurred_at`` values (batches,
clients with second precision), and an event arriving with the boundary timestamp shifts
that offset, so a page could repeat or skip an event. Here the position is the pair
(occurred_at, id), unique, so the offset is always 0 and a page starts strictly after the
previous page's last row:

    occurred_at <= t AND (occurred_at < t OR id < pk)

The first conjunct is an index condition on ``auditevent_tenant_time`` (tenant, -occurred_at,
-id), the second a cheap filter on the first rows scanned, so a deep page costs the same as
the first one. DRF's link building (next/previous, offsets) is reused unchanged.
"""

from base64 import b64decode
from datetime import UTC, datetime
from urllib.parse import parse_qs
from uuid import UUID

from django.db.models import Q
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination

from audit.filters import EMPTY_MEANS_ABSENT, plain_int
from audit.ledger.canonical import format_timestamp

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100
# What DRF's CursorPagination.encode_cursor writes: offset, reverse, position.
_CURSOR_TOKENS = frozenset({"o", "r", "p"})


def page_size_schema(maximum: int = MAX_PAGE_SIZE) -> dict:
    """The OpenAPI schema of ``page_size``: the bounds ``get_page_size`` enforces."""
    return {"type": "integer", "minimum": 1, "maximum": maximum}


class StrictCursorPagination(CursorPagination):
    """DRF's cursor pagination with bad input answered 400, naming ``page_size`` or ``cursor``.

    DRF itself quietly replaces a bad or too large ``page_size``, answers 404 to a cursor it
    cannot decode, and passes a decodable cursor's position unchecked into the query (a 500
    when it is not of the ordering field's type). A subclass says what a valid position is
    in ``_parse_position``.
    """

    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "page_size"
    cursor_query_description = f"`next` of the last page. {EMPTY_MEANS_ABSENT}"
    max_page_size = MAX_PAGE_SIZE
    template = None

    def get_page_size(self, request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None or raw == "":
            return self.page_size
        # Plain ASCII digits only: int() would also read "1_0", "+5", " 5" and Arabic-Indic "5".
        size = plain_int(raw)
        if size is None or not 1 <= size <= self.max_page_size:
            raise ValidationError(
                {"page_size": [f"Must be an integer from 1 to {self.max_page_size}."]}
            )
        return size

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = page_size_schema(self.max_page_size)
        return parameters

    def decode_cursor(self, request) -> Cursor | None:
        cursor = self._decode_or_400(request)
        if cursor is None or cursor.position is None:
            return cursor
        self._parse_position(cursor.position)  # 400 now rather than a 500 in the query
        return cursor

    def _decode_or_400(self, request) -> Cursor | None:
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded:  # "cursor=" alone is the first page, as DRF reads it
            self._check_tokens(encoded)
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError({"cursor": ["Invalid cursor."]}) from None

    @staticmethod
    def _check_tokens(encoded: str) -> None:
        """400 unless the cursor's query string holds only DRF's tokens, each once.

        DRF reads the tokens it knows and ignores the rest, so any text that happens to be
        base64 ("aGVsbG8=" is "hello", the search endpoint's cursor) was no position at all:
        the first page, 200. Every cursor DRF writes holds ``p`` (a position), ``r=1``
        (backwards) or ``o`` (an offset). Undecodable ones are left to DRF (its 404, a 400
        here).
        """
        try:
            querystring = b64decode(encoded.encode("ascii")).decode("ascii")
        except (TypeError, ValueError):
            return
        tokens = parse_qs(querystring, keep_blank_values=True)
        if (
            not tokens
            or not tokens.keys() <= _CURSOR_TOKENS
            or any(len(values) > 1 for values in tokens.values())
        ):
            raise ValidationError({"cursor": ["Invalid cursor."]})

    @staticmethod
    def _parse_position(position: str):
        """The position as the query compares it; ``ValidationError`` naming ``cursor`` if
        it is not one this pagination issues."""
        raise NotImplementedError


class EventCursorPagination(StrictCursorPagination):
    ordering = ("-occurred_at", "-id")
    page_size_query_description = (
        f"Events per page, 1 to {MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE}). {EMPTY_MEANS_ABSENT}"
    )

    @staticmethod
    def _parse_position(position: str) -> tuple[datetime, UUID]:
        try:
            when, _, pk = position.partition("|")
            parsed = datetime.fromisoformat(when.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                raise ValueError("naive")
            # In UTC: PostgreSQL refuses offsets beyond ±15:59, which Python reads (up to
            # ±23:59); OverflowError when the UTC time falls outside years 1 to 9999.
            return parsed.astimezone(UTC), UUID(pk)
        except (ValueError, OverflowError):
            raise ValidationError({"cursor": ["Invalid cursor."]}) from None

    def _get_position_from_instance(self, instance, ordering) -> str:
        if isinstance(instance, dict):
            occurred_at, pk = instance["occurred_at"], instance["id"]
        else:
            occurred_at, pk = instance.occurred_at, instance.pk
        return f"{format_timestamp(occurred_at)}|{pk}"

    def paginate_queryset(self, queryset, request, view=None):
        # DRF's own paginate_queryset (3.18) with one change: the position filter is the
        # composite keyset above instead of ``ordering[0] < position`` (offsets stay 0).
        self.request = request
        self.page_size = self.get_page_size(request)
        self.base_url = request.build_absolute_uri()
        self.ordering = self.get_ordering(request, queryset, view)
        self.cursor = self.decode_cursor(request)
        if self.cursor is None:
            offset, reverse, current_position = 0, False, None
        else:
            offset, reverse, current_position = self.cursor

        if reverse:
            queryset = queryset.order_by("occurred_at", "id")
        else:
            queryset = queryset.order_by("-occurred_at", "-id")

        if current_position is not None:
            occurred_at, pk = self._parse_position(current_position)
            if reverse:  # walking back towards newer events
                keyset = Q(occurred_at__gte=occurred_at) & (
                    Q(occurred_at__gt=occurred_at) | Q(occurred_at=occurred_at, id__gt=pk)
                )
            else:
                keyset = Q(occurred_at__lte=occurred_at) & (
                    Q(occurred_at__lt=occurred_at) | Q(occurred_at=occurred_at, id__lt=pk)
                )
            queryset = queryset.filter(keyset)

        # One extra row tells whether another page follows: no COUNT(*).
        results = list(queryset[offset : offset + self.page_size + 1])
        self.page = list(results[: self.page_size])
        if len(results) > len(self.page):
            has_following_position = True
            following_position = self._get_position_from_instance(results[-1], self.ordering)
        else:
            has_following_position = False
            following_position = None

        if reverse:
            self.page = list(reversed(self.page))
            self.has_next = (current_position is not None) or (offset > 0)
            self.has_previous = has_following_position
            if self.has_next:
                self.next_position = current_position
            if self.has_previous:
                self.previous_position = following_position
        else:
            self.has_next = has_following_position
            self.has_previous = (current_position is not None) or (offset > 0)
            if self.has_next:
                self.next_position = following_position
            if self.has_previous:
                self.previous_position = current_position
        return self.page
