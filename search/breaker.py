"""The circuit breaker around Elasticsearch (pybreaker), one per process, in memory.

Per-process state is enough with a handful of processes (notes §6) and cannot itself fail;
a shared Redis storage would add a round-trip per search and must be built lazily because
``CircuitRedisStorage`` raises when Redis is down at construction.
"""

import pybreaker
from django.conf import settings
from elasticsearch import ApiError


def _not_an_outage(exc: BaseException) -> bool:
    """A 4xx is a bad request (our query or mapping), not Elasticsearch being down."""
    status = getattr(getattr(exc, "meta", None), "status", 500)
    return isinstance(exc, ApiError) and status < 500


es_breaker = pybreaker.CircuitBreaker(
    fail_max=settings.TRACELEDGER_SEARCH_BREAKER_FAILURES,
    reset_timeout=settings.TRACELEDGER_SEARCH_BREAKER_RESET,
    exclude=[_not_an_outage],
    name="elasticsearch",
)

STATE_VALUES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}
