"""The small interface every search backend implements, and the shapes they share."""

import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from django.core.exceptions import ValidationError
from django.db.models import QuerySet


class InvalidCursor(ValueError):
    """The cursor is not one this backend issued (tampered, or from the other backend)."""


class InvalidQuery(ValidationError):
    """The search text is one PostgreSQL's ``websearch_to_tsquery`` refuses to parse.

    A Django ``ValidationError`` so that callers that must not import this app (the audit
    admin, through ``audit.ports.event_search``) can still tell it from a server error.
    """


@dataclass(frozen=True)
class SearchRequest:
    # None: a superuser's search of every tenant.
    tenant_id: int | None
    q: str
    # The caller's tenant-scoped AuditEvent queryset with the list filters applied; the
    # PostgreSQL backend searches within it, Elasticsearch results are re-read through it.
    queryset: QuerySet
    # The same filters as plain values (cleaned by the list FilterSet), for Elasticsearch.
    filters: dict = field(default_factory=dict)
    page_size: int = 50
    cursor: dict | None = None


@dataclass
class SearchPage:
    backend: str
    events: list  # AuditEvent instances, best match first
    scores: list[float]
    next_cursor: dict | None
    degraded: bool = False


class SearchBackend(Protocol):
    name: str

    def search(self, request: SearchRequest) -> SearchPage: ...

    def index_events(self, *, event_ids: list[str], overwrite: bool = False) -> int:
        """Index these events (idempotent: keyed by event id); returns how many were sent."""
        ...


def cursor_values(cursor: dict, backend: str) -> tuple[float, datetime, str]:
    """(score, occurred_at in UTC, id) of the last hit of the previous page, validated."""
    from django.utils.dateparse import parse_datetime

    if cursor.get("b") != backend:
        raise InvalidCursor("This cursor belongs to another search backend; start again.")
    try:
        score = cursor["s"]
        occurred_at = parse_datetime(cursor["t"])
        event_id = str(uuid.UUID(str(cursor["i"])))
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise InvalidCursor("The cursor is malformed.") from exc
    # Only what this code writes: a finite rank (JSON has no NaN, but Python's parser takes
    # one, and an integer beyond float range converts to none) and an aware time, which is
    # what the keyset comparison needs.
    if type(score) not in (int, float):
        raise InvalidCursor("The cursor is malformed.")
    try:
        score = float(score)
    except OverflowError:
        raise InvalidCursor("The cursor is malformed.") from None
    if not math.isfinite(score) or occurred_at is None or occurred_at.tzinfo is None:
        raise InvalidCursor("The cursor is malformed.")
    try:
        # In UTC: PostgreSQL refuses offsets beyond ±15:59, which Python reads (up to ±23:59);
        # OverflowError when the UTC time falls outside years 1 to 9999.
        occurred_at = occurred_at.astimezone(UTC)
    except OverflowError:
        raise InvalidCursor("The cursor is malformed.") from None
    return score, occurred_at, event_id


def make_cursor(backend: str, score: float, event) -> dict:
    return {
        "b": backend,
        "s": float(score),
        "t": event.occurred_at.astimezone(UTC).isoformat(),
        "i": str(event.id),
    }
