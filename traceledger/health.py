"""Liveness (``/healthz``) and per-dependency readiness (``/readyz``).

Readiness runs every check concurrently, each bounded by ``TRACELEDGER_HEALTH_TIMEOUT``
(default 0.8 s), so a blackholed dependency cannot hold the probe. Only a down database
makes the service unready (503): without RabbitMQ events go to the outbox, without Redis
the cache misses, without Elasticsearch search falls back to PostgreSQL. Anything but ``ok``
or ``disabled`` (``down``, or ``unknown`` when a check cannot be answered) is ``degraded``.
"""

import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial

import amqp
import psycopg
from django.conf import settings
from django.db import connections
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from kombu import Connection

logger = logging.getLogger(__name__)

OK, DOWN, DISABLED, UNKNOWN = "ok", "down", "disabled", "unknown"
_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="readyz")


def database_params() -> dict:
    """Connection parameters of the default database (read in the request's thread)."""
    return connections["default"].get_connection_params()


def check_database(params: dict) -> str:
    params = dict(params)
    params["connect_timeout"] = max(1, int(settings.TRACELEDGER_HEALTH_TIMEOUT + 0.5))
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute("SELECT 1")
    return OK


# The probe's message: empty, to the default exchange, under a routing key no queue has, so
# RabbitMQ confirms and drops it.
BROKER_PROBE_ROUTING_KEY = "traceledger.readiness-probe"


class BrokerBlocked(Exception):
    pass


def check_broker() -> str:
    """Whether a publish would be confirmed now, as the API's publishes must be.

    A connection alone opens fine during a memory or disk alarm: RabbitMQ blocks a
    connection only once it publishes (and says so with ``connection.blocked``), so the
    probe publishes one empty, unroutable message and waits for its confirm. It reported
    ``ok`` through a whole alarm while every request went to the outbox."""
    from audit.publisher import breaker_is_open

    # While the publish breaker is open, requests skip RabbitMQ (events go to the outbox):
    # report what ingestion sees, not only whether a fresh connection would open.
    if breaker_is_open():
        return DOWN
    timeout = settings.TRACELEDGER_HEALTH_TIMEOUT
    blocked: list[str] = []
    confirmed: list[bool] = []
    conn = Connection(
        settings.CELERY_BROKER_URL,
        connect_timeout=timeout,
        heartbeat=0,
        transport_options={
            "read_timeout": timeout,
            "write_timeout": timeout,
            "on_blocked": blocked.append,
        },
    )
    try:
        conn.ensure_connection(max_retries=0, timeout=timeout)
        channel = conn.channel()
        channel.confirm_select()
        channel.events["basic_ack"].add(lambda *args: confirmed.append(True))
        channel.basic_publish(amqp.Message(b""), exchange="", routing_key=BROKER_PROBE_ROUTING_KEY)
        deadline = time.monotonic() + timeout
        while not (confirmed or blocked) and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                conn.connection.drain_events(timeout=max(deadline - time.monotonic(), 0.01))
        if blocked:
            raise BrokerBlocked(f"RabbitMQ blocks publishers (a resource alarm): {blocked[0]}")
        if not confirmed:
            raise TimeoutError(f"RabbitMQ did not confirm a publish within {timeout:g}s")
        return OK
    finally:
        if confirmed and not blocked:
            conn.close()
        else:
            conn.collect()  # no close handshake: a blocked connection never answers it


def check_cache() -> str:
    from django_redis import get_redis_connection

    get_redis_connection("default").ping()
    return OK


def check_search() -> str:
    """Elasticsearch: ``disabled`` when search runs on PostgreSQL; else a probe through this
    process's breaker: ``down`` at once while it is open (searches are answering from
    PostgreSQL), and once its reset time has passed the probe is its trial call, so readiness
    (and searches) come back when Elasticsearch does, not at the next search."""
    if not settings.ELASTICSEARCH_URL:
        return DISABLED
    import pybreaker
    from elastic_transport import TransportError
    from elasticsearch import ApiError

    from search.backends.elasticsearch import es_client
    from search.breaker import es_breaker

    # The process's pooled client (a new client per probe leaked its connection pool).
    client = es_client().options(request_timeout=settings.TRACELEDGER_HEALTH_TIMEOUT)
    try:
        # info(), not ping(): ping turns a failure into False, which the breaker would count
        # as a success.
        es_breaker.call(client.info)
    except (pybreaker.CircuitBreakerError, ApiError, TransportError):
        return DOWN
    return OK


def check_workers() -> str:
    """Whether any worker consumes ``audit.ingest``: ``down`` when none does, so a stopped
    worker makes the stack ``degraded`` (events are accepted, nothing stores them). Only
    RabbitMQ can say, so when it cannot be asked the answer is ``unknown`` (see
    ``UNKNOWN_ON_FAILURE``): the workers may well be running, waiting for it."""
    from audit.topology import queue_state

    state = queue_state(settings.CELERY_BROKER_URL, timeout=settings.TRACELEDGER_HEALTH_TIMEOUT)
    return OK if state.consumers else DOWN


CHECKS: dict[str, Callable[..., str]] = {
    "database": check_database,
    "broker": check_broker,
    "cache": check_cache,
    "search": check_search,
    "workers": check_workers,
}


# Checks that observe something through another dependency rather than probing it: their
# failure (or timeout) says nothing about the thing itself. ``workers`` read ``down`` through
# a whole RabbitMQ outage while the workers ran, waiting for it (operator QA).
UNKNOWN_ON_FAILURE = frozenset({"workers"})


def _failed(name: str) -> str:
    return UNKNOWN if name in UNKNOWN_ON_FAILURE else DOWN


def _run(name: str, check: Callable[[], str]) -> str:
    try:
        return check()
    except Exception as exc:  # a readiness probe reports, it never raises
        logger.warning("readiness check failed", extra={"check": name, "error": repr(exc)})
        return _failed(name)


def readiness() -> dict:
    timeout = settings.TRACELEDGER_HEALTH_TIMEOUT
    db_params = database_params()
    futures = {
        name: _executor.submit(
            _run, name, partial(check, db_params) if name == "database" else check
        )
        for name, check in CHECKS.items()
    }
    results = {}
    for name, future in futures.items():
        try:
            results[name] = future.result(timeout=timeout + 0.1)
        except FutureTimeout:
            logger.warning("readiness check timed out", extra={"check": name})
            results[name] = _failed(name)
    if results["database"] == DOWN:
        overall = "down"
    elif set(results.values()) <= {OK, DISABLED}:
        overall = "ok"
    else:
        # A check that is down, or that cannot be answered, is not ok.
        overall = "degraded"
    return {"status": overall, "checks": results}


# Exempt from CSRF so that a probe POSTing by mistake gets require_safe's 405, not a CSRF 403.
@csrf_exempt
@never_cache
@require_safe
def healthz(request):
    return JsonResponse({"status": "ok"})


@csrf_exempt
@never_cache
@require_safe
def readyz(request):
    report = readiness()
    return JsonResponse(report, status=503 if report["status"] == "down" else 200)
