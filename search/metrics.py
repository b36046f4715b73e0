"""Search metrics (``traceledger_search_*``): requests, indexing, breaker state, index lag.

The breaker state and the lag are computed when ``/metrics`` is scraped: the breaker state
is the scraping process's (breakers are per process), the lag is read from PostgreSQL.
"""

import logging

from django.conf import settings
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

SEARCH_REQUESTS = Counter(
    "traceledger_search_requests_total",
    "Searches answered, by the backend that answered and whether it was a fallback.",
    ["backend", "degraded"],
)
INDEXED_EVENTS = Counter(
    "traceledger_search_indexed_events_total",
    "Events sent to a search backend by the indexer (re-indexing counts again).",
    ["backend"],
)
INDEX_FAILURES = Counter(
    "traceledger_search_index_failures_total",
    "Index batches that failed and were left to a retry or the sweeper.",
    ["backend"],
)

INDEX_RETRIES = Counter(
    "traceledger_search_index_retries_total",
    "Index tasks retried because the database was away, by exception class (Celery's own "
    "retry line is throttled). After max_retries the sweep catches up.",
    ["error"],
)
# Every series at 0 from the start, in every process (search.apps imports this module), so
# an alert on a rate has a series before the first event (the retries' in search.tasks).
for _backend in ("postgresql", "elasticsearch") if settings.ELASTICSEARCH_URL else ("postgresql",):
    INDEXED_EVENTS.labels(_backend)
    INDEX_FAILURES.labels(_backend)


class SearchStateCollector:
    """Scrape-time gauges: breaker state and per-backend indexing lag in events."""

    def collect(self):
        from search.breaker import STATE_VALUES, es_breaker

        breaker = GaugeMetricFamily(
            "traceledger_search_breaker_state",
            "Elasticsearch circuit breaker of this process: 0 closed, 1 half-open, 2 open.",
            labels=["name"],
        )
        breaker.add_metric([es_breaker.name], STATE_VALUES.get(es_breaker.current_state, 0))
        yield breaker

        lag = GaugeMetricFamily(
            "traceledger_search_index_lag_events",
            "Stored events not yet behind the backend's high-water mark, over all tenants.",
            labels=["backend"],
        )
        try:
            from search.selectors import index_lag

            for backend, value in index_lag().items():
                lag.add_metric([backend], value)
        except Exception as exc:  # a scrape reports what it can; the DB may be down
            logger.warning("search lag unavailable", extra={"error": repr(exc)})
        yield lag
