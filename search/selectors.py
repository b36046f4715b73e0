"""Reads of the search app: run a search with fallback, and the indexing lag."""

import logging

import pybreaker
from django.contrib.postgres.search import SearchQuery
from django.db.models import Max, QuerySet
from elastic_transport import TransportError
from elasticsearch import ApiError

from accounts.models import Tenant
from audit.models import AuditEvent
from search.backends import index_backends, primary_backend
from search.backends.base import SearchPage, SearchRequest
from search.backends.postgresql import SEARCH_CONFIG, PostgresBackend, query_check
from search.breaker import ElasticsearchUnavailable
from search.metrics import SEARCH_REQUESTS
from search.models import IndexProgress
from traceledger.log_throttle import one_line

# "search falls back to PostgreSQL" comes with every search while Elasticsearch is away:
# throttled in LOGGING, one line per 30 s per process (README, "When a dependency fails").
logger = logging.getLogger(__name__)

# Elasticsearch down, slow (timeout), failing or overloaded (5xx, 429), or the breaker open.
ES_UNAVAILABLE = (pybreaker.CircuitBreakerError, TransportError, ElasticsearchUnavailable)
# ... or refusing our request otherwise (another 4xx). ``reindex_search`` gives up on these.
ES_OUTAGES = (*ES_UNAVAILABLE, ApiError)


def events_search(*, request: SearchRequest) -> SearchPage:
    """Search with the configured backend; Elasticsearch trouble falls back to PostgreSQL.

    Once the breaker is open, the fallback costs no wait on Elasticsearch at all. A text
    PostgreSQL cannot parse raises ``InvalidQuery`` whichever backend would answer, so the
    same query is never refused only during a fallback. A text with no word PostgreSQL
    indexes is refused only where PostgreSQL is the search engine: Elasticsearch may find
    it, and its fallback answers no results (marked degraded) rather than a 400.
    """
    primary = primary_backend()
    query_check(request.q, words_required=primary.name == PostgresBackend.name)
    if primary.name != PostgresBackend.name and _cursor_backend(request) == PostgresBackend.name:
        # The search began on the fallback (its first page was degraded): it pages on there,
        # since ranks are not comparable across engines. Refusing the cursor would leave the
        # caller only the first page for as long as Elasticsearch is down.
        page = PostgresBackend().search(request)
        page.degraded = True
    else:
        try:
            page = primary.search(request)
        except ES_OUTAGES as exc:  # only the Elasticsearch backend raises these
            if isinstance(exc, ES_UNAVAILABLE):
                logger.warning(
                    "search falls back to PostgreSQL: Elasticsearch unavailable (%s)",
                    one_line(exc),
                    extra={"error": repr(exc)},
                )
            else:
                # A 4xx: Elasticsearch refuses a query we built (or our mapping), a bug. The
                # caller still gets PostgreSQL's answer; the log gets the traceback.
                logger.error(
                    "search falls back to PostgreSQL: Elasticsearch refused the query (%s)",
                    one_line(exc),
                    exc_info=True,
                )
            page = PostgresBackend().search(request)
            page.degraded = True
    SEARCH_REQUESTS.labels(page.backend, str(page.degraded).lower()).inc()
    return page


def _cursor_backend(request: SearchRequest) -> object:
    return request.cursor.get("b") if request.cursor else None


def event_queryset_search(queryset: QuerySet, q: str) -> QuerySet:
    """``audit.ports.event_search``: narrow an events queryset to full-text matches.

    Always PostgreSQL (the admin must work without Elasticsearch); ordering is the caller's.
    Raises ``InvalidQuery`` (a Django ``ValidationError``) for a text PostgreSQL cannot
    parse, now rather than when the caller evaluates the queryset.
    """
    q = (q or "").strip()
    if not q:
        return queryset
    query_check(q, words_required=True)
    query = SearchQuery(q, search_type="websearch", config=SEARCH_CONFIG)
    return queryset.filter(search_entry__vector=query)


def head_sequences() -> dict[int, int]:
    """The highest stored sequence of every tenant (served by the (tenant, sequence) index)."""
    heads = {}
    for tenant_id in Tenant.objects.values_list("pk", flat=True):
        head = AuditEvent.objects.filter(tenant_id=tenant_id).aggregate(m=Max("sequence"))["m"]
        heads[tenant_id] = head or 0
    return heads


def index_lag() -> dict[str, int]:
    """Per backend: stored events beyond the tenants' high-water marks."""
    heads = head_sequences()
    lag = {}
    for backend in index_backends():
        marks = dict(
            IndexProgress.objects.filter(backend=backend.name).values_list(
                "tenant_id", "last_sequence"
            )
        )
        lag[backend.name] = sum(max(0, head - marks.get(t, 0)) for t, head in heads.items())
    return lag
