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
    ``ElasticsearchUnavailable`` (from the ``ApiError``), counted by the breaker.

    Once the open breaker's reset time is up, its trial call is ``es_probe``, not ``fn``: a
    bulk's trial would wait its own timeout (30 s for the sweep) on a black-holed cluster,
    once per reset period in every process. ``fn`` runs only when the probe closed it."""
    if es_breaker.current_state != pybreaker.STATE_CLOSED:
        es_probe()  # open: CircuitBreakerError at once, or the trial once the time is up
    return es_breaker.call(_answered, fn, args, kwargs)


def es_probe() -> None:
    """Ask Elasticsearch whether it answers (``GET /``) within ``TRACELEDGER_SEARCH_TIMEOUT``,
    through the breaker. Any answer but a 5xx or 429 will do: a 403 (a user without the
    ``monitor`` privilege) is an Elasticsearch that answers."""
    es_breaker.call(_answered, _info, (), {})


def _info() -> None:
    from search.backends.elasticsearch import es_client

    try:
        # info(), not ping(): ping turns a failure into False, which would pass for an answer.
        es_client().info()
    except ApiError as exc:
        if outage_status(exc.meta.status):
            raise


def _answered(fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        if outage_status(exc.meta.status):
            status = exc.meta.status
            raise ElasticsearchUnavailable(f"Elasticsearch answered {status}: {exc}") from exc
        raise
