"""The circuit breaker around Elasticsearch (pybreaker), one per process, in memory.

Per-process state is enough with a handful of processes (notes §6) and cannot itself fail;
a shared Redis storage would add a round-trip per search and must be built lazily because
``CircuitRedisStorage`` raises when Redis is down at construction.
"""

from collections.abc import Callable
from typing import TypeVar

import pybreaker
from django.conf import settings
from elasticsearch import ApiError

T = TypeVar("T")


class ElasticsearchUnavailable(Exception):
    """Elasticsearch answered, with a 5xx or a 429: up but failing, or overloaded.

    An outage like a refused connection (the breaker counts it, indexing leaves it to the
    sweep, a search falls back to PostgreSQL). Elasticsearch 9's ``ApiError`` is no
    ``TransportError``, so without this a 503 was told apart from a bad request nowhere;
    any other 4xx stays an ``ApiError``: our request or mapping is wrong, a bug."""


def outage_status(status: int) -> bool:
    """A 5xx, or 429 (too many requests: rejected executions, a tripped memory breaker)."""
    return status >= 500 or status == 429


def _not_an_outage(exc: BaseException) -> bool:
    """A 4xx other than 429 is a bad request (our query or mapping), not Elasticsearch being
    down; the breaker takes it as an answer."""
    status = getattr(getattr(exc, "meta", None), "status", 500)
    return isinstance(exc, ApiError) and not outage_status(status)


es_breaker = pybreaker.CircuitBreaker(
    fail_max=settings.TRACELEDGER_SEARCH_BREAKER_FAILURES,
    reset_timeout=settings.TRACELEDGER_SEARCH_BREAKER_RESET,
    exclude=[_not_an_outage],
    name="elasticsearch",
)

STATE_VALUES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}


def es_call(fn: Callable[..., T], /, *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` (a call to Elasticsearch) through the breaker: an open one
    raises ``CircuitBreakerError`` at once. A 5xx or 429 answer is raised as
    ``ElasticsearchUnavailable`` (from the ``ApiError``), counted by the breaker."""
    return es_breaker.call(_answered, fn, args, kwargs)


def _answered(fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        if outage_status(exc.meta.status):
            status = exc.meta.status
            raise ElasticsearchUnavailable(f"Elasticsearch answered {status}: {exc}") from exc
        raise
