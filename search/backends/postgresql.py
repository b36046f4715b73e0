"""PostgreSQL full-text backend: ``websearch_to_tsquery`` over ``EventSearchEntry.vector``.

The vector is built in SQL from the stored event (weights: A = action, actor and target;
B = description; C = string values of metadata), so the database never ships rows to Python
to index them. Ranking is ``ts_rank``; ties go newest first, then by id, which also makes
the keyset cursor total.
"""

import uuid

from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db import connection
from django.db.models import F, FloatField, Q
from django.db.models.functions import Cast

from search.backends.base import SearchPage, SearchRequest, cursor_values, make_cursor

SEARCH_CONFIG = "english"

# The vector recipe. 'english' must match SEARCH_CONFIG (the query side).
_INSERT_SQL = """
    INSERT INTO search_eventsearchentry (event_id, tenant_id, vector, indexed_at)
    SELECT e.id, e.tenant_id,
        setweight(to_tsvector('english', concat_ws(' ',
            e.action, regexp_replace(e.action, '[._:-]+', ' ', 'g'),
            e.actor_id, e.actor_name, e.target_id, e.target_type, e.target_name)), 'A')
        || setweight(to_tsvector('english', e.description), 'B')
        || setweight(jsonb_to_tsvector('english', e.metadata, '["string"]'), 'C'),
        now()
    FROM audit_auditevent e
    WHERE e.id = ANY(%s)
    ON CONFLICT (event_id) DO
"""
_ON_CONFLICT = {
    False: "NOTHING",
    True: "UPDATE SET vector = EXCLUDED.vector, indexed_at = EXCLUDED.indexed_at",
}


class PostgresBackend:
    name = "postgresql"

    def search(self, request: SearchRequest) -> SearchPage:
        query = SearchQuery(request.q, search_type="websearch", config=SEARCH_CONFIG)
        # float8 so the rank written into the cursor compares exactly on the next page.
        rank = Cast(SearchRank(F("search_entry__vector"), query), FloatField())
        qs = (
            request.queryset.filter(search_entry__vector=query)
            # Redundant with the scoped queryset, but lets the planner narrow the entries.
            .filter(search_entry__tenant_id=request.tenant_id)
            .annotate(rank=rank)
            .order_by("-rank", "-occurred_at", "-id")
        )
        if request.cursor:
            score, occurred_at, event_id = cursor_values(request.cursor, self.name)
            qs = qs.filter(
                Q(rank__lt=score)
                | Q(rank=score, occurred_at__lt=occurred_at)
                | Q(rank=score, occurred_at=occurred_at, id__lt=event_id)
            )
        rows = list(qs[: request.page_size + 1])
        has_more = len(rows) > request.page_size
        rows = rows[: request.page_size]
        next_cursor = make_cursor(self.name, rows[-1].rank, rows[-1]) if has_more else None
        return SearchPage(
            backend=self.name,
            events=rows,
            scores=[row.rank for row in rows],
            next_cursor=next_cursor,
        )

    def index_events(self, *, event_ids: list[str], overwrite: bool = False) -> int:
        if not event_ids:
            return 0
        # Events are immutable: a second index of the same id only matters when the vector
        # recipe changed, which is what ``reindex_search`` (overwrite) is for.
        with connection.cursor() as cursor:
            cursor.execute(
                _INSERT_SQL + _ON_CONFLICT[overwrite], [[uuid.UUID(str(i)) for i in event_ids]]
            )
        return len(event_ids)
