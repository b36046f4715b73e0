"""PostgreSQL full-text backend: ``websearch_to_tsquery`` over ``EventSearchEntry.vector``.

The vector is built in SQL from the stored event (weights: A = action, actor and target;
B = description; C = string values of metadata), so the database never ships rows to Python
to index them. Ranking is ``ts_rank``; ties go newest first, then by id, which also makes
the keyset cursor total.
"""

import uuid

from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db import DatabaseError, DataError, connection, transaction
from django.db.models import F, FloatField, Q
from django.db.models.functions import Cast

from audit.services.access_log import ACCESS_ACTIONS
from audit.services.submission import SYSTEM_SUBMITTER
from search.backends.base import (
    InvalidQuery,
    SearchPage,
    SearchRequest,
    cursor_values,
    make_cursor,
)

SEARCH_CONFIG = "english"

QUERY_TOO_COMPLEX = "The search text is too complex to search (for example, too many '-' in a row)."
QUERY_UNSEARCHABLE = "The search text contains characters that cannot be searched."
QUERY_NO_WORDS = (
    "The search text has no word to search for: the search matches words (letters and "
    "digits); symbols, emoji and common words such as 'the' are not indexed."
)


def query_check(q: str, *, words_required: bool = False) -> None:
    """Raise ``InvalidQuery`` if PostgreSQL cannot turn ``q`` into a tsquery.

    The parser has limits no length check captures: it keeps pending operators on a stack
    of 32 (``STACKDEPTH`` in src/backend/utils/adt/tsquery.c), and each ``-`` waiting for its
    word is one, as is the implicit AND after a word, so ``a`` followed by 32 ``-`` fails
    with "tsquery stack too small". Rather than mirror the parser, ask it, once, in a
    savepoint: the request may run inside a transaction, which an error would abort.
    Both backends accept the same syntax, so this runs before either answers.

    ``words_required``: also refuse a text with no word PostgreSQL indexes (``🚀``, ``*``,
    ``the``), whose tsquery is empty and matches nothing: "0 results" read as "no such
    events". Only for PostgreSQL's own search; Elasticsearch's analyzer may keep such text.
    """
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT numnode(websearch_to_tsquery(%s::regconfig, %s))", [SEARCH_CONFIG, q]
            )
            (nodes,) = cursor.fetchone()
    except DataError as exc:  # e.g. a NUL character, refused by the driver
        raise InvalidQuery(QUERY_UNSEARCHABLE, code="invalid") from exc
    except DatabaseError as exc:
        if not _is_parser_limit(exc):
            raise
        raise InvalidQuery(QUERY_TOO_COMPLEX, code="too_complex") from exc
    if words_required and nodes == 0:
        raise InvalidQuery(QUERY_NO_WORDS, code="no_words")


def _is_parser_limit(exc: DatabaseError) -> bool:
    sqlstate = getattr(exc.__cause__, "sqlstate", None) or ""
    # 54xxx program_limit_exceeded ("tsquery is too large", "word is too long in tsquery",
    # stack depth); the operator stack is an elog(), so internal_error (XX000), whose
    # message is never translated.
    return sqlstate.startswith("54") or (sqlstate == "XX000" and "tsquery" in str(exc))


# Records of people reading the trail (audit_log.read/search/export) carry the filters and
# search text they used in their metadata; indexed, every search would find the earlier
# searches for the same words. They are found by action, actor and description instead.
# Only TraceLedger's own (``is_access_record``): a client's event with such an action name
# is searched like any other.
UNSEARCHED_METADATA_ACTIONS = sorted(ACCESS_ACTIONS)

# The vector recipe, of an events-table row ``e``; its parameters are VECTOR_PARAMS.
# 'english' must match SEARCH_CONFIG (the query side). The benchmark's limit
# (bench/baselines.py) builds the same vectors with it.
VECTOR_SQL = """
        setweight(to_tsvector('english', concat_ws(' ',
            e.action, regexp_replace(e.action, '[._:-]+', ' ', 'g'),
            e.actor_id, e.actor_name, e.target_id, e.target_type, e.target_name)), 'A')
        || setweight(to_tsvector('english', e.description), 'B')
        || CASE WHEN e.action = ANY(%s) AND e.submitted_by = %s THEN ''::tsvector
           ELSE setweight(jsonb_to_tsvector('english', e.metadata, '["string"]'), 'C') END"""
VECTOR_PARAMS = [UNSEARCHED_METADATA_ACTIONS, SYSTEM_SUBMITTER]
_INSERT_SQL = f"""
    INSERT INTO search_eventsearchentry (event_id, tenant_id, vector, indexed_at)
    SELECT e.id, e.tenant_id, {VECTOR_SQL},
        now()
    FROM audit_auditevent e
    WHERE e.id = ANY(%s)
    ON CONFLICT (event_id) DO
"""  # noqa: S608 (constants only; the values are parameters)
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
        qs = request.queryset.filter(search_entry__vector=query)
        if request.tenant_id is not None:
            # Redundant with the scoped queryset, but lets the planner narrow the entries.
            qs = qs.filter(search_entry__tenant_id=request.tenant_id)
        qs = qs.annotate(rank=rank).order_by("-rank", "-occurred_at", "-id")
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
                _INSERT_SQL + _ON_CONFLICT[overwrite],
                [*VECTOR_PARAMS, [uuid.UUID(str(i)) for i in event_ids]],
            )
        return len(event_ids)
