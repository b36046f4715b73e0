"""Writes of the search app: indexing events into the backends and keeping the sync marks.

Sync model: ``events_ingested`` → ``search.tasks.index_events`` (those ids, right away) and a
periodic sweep (``search.tasks.sweep_index``) that indexes whatever is behind each tenant's
high-water mark. Per tenant, sequences become visible in order (ingest holds the tenant's
chain-head lock until commit), so "everything up to ``last_sequence`` is indexed" is a
single number and the sweep only reads forward from it.
"""

import logging
from collections.abc import Iterator
from datetime import datetime

import pybreaker
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone
from elastic_transport import TransportError

from accounts.models import Tenant
from audit.models import AuditEvent
from search.backends import index_backends
from search.backends.base import SearchBackend
from search.backends.elasticsearch import BulkIndexError
from search.breaker import ElasticsearchUnavailable
from search.metrics import INDEX_FAILURES, INDEXED_EVENTS
from search.models import Backend, IndexProgress, ReindexRun
from traceledger.log_throttle import one_line

# The sweep's "skips <backend>" line, once per run while Elasticsearch is away, and the index
# task's "left to the sweep", once per ingest batch: throttled per backend in LOGGING
# (README, "When a dependency fails").
sweep_logger = logging.getLogger(f"{__name__}.sweep")
index_logger = logging.getLogger(f"{__name__}.index")

# A search backend being away: Elasticsearch unreachable or timing out (TransportError),
# answering 5xx or 429 (ElasticsearchUnavailable), a bulk request it refused in part, its
# breaker open. Transient: the sweep catches up from the backend's high-water mark (the
# index task leaves these to it). Any other 4xx is not here: a request of ours it refuses
# is a bug.
BACKEND_UNAVAILABLE = (
    TransportError,
    ElasticsearchUnavailable,
    BulkIndexError,
    pybreaker.CircuitBreakerError,
)

BATCH_SIZE = 1000


def _send(backend: SearchBackend, *, event_ids: list[str], **options) -> int:
    """Index and count (the Elasticsearch backend goes through its breaker itself)."""
    try:
        sent = backend.index_events(event_ids=event_ids, **options)
    except Exception:
        INDEX_FAILURES.labels(backend.name).inc()
        raise
    INDEXED_EVENTS.labels(backend.name).inc(sent)
    return sent


def index_progress_get(*, tenant_id: int, backend: str) -> IndexProgress:
    progress, _ = IndexProgress.objects.get_or_create(tenant_id=tenant_id, backend=backend)
    return progress


# One statement instead of get_or_create plus a conditional UPDATE (three round trips and
# most of the index task's ORM time on the single-event path): the row is created at the
# run's end when the run starts the tenant's sequence, else at 0; an existing mark moves only
# when the run continues it. Django's upsert (bulk_create(update_conflicts=…)) has no WHERE.
_ADVANCE_SQL = f"""
    INSERT INTO {IndexProgress._meta.db_table} AS mark
        (tenant_id, backend, last_sequence, updated_at)
    VALUES (%(tenant_id)s, %(backend)s, CASE WHEN %(first)s <= 1 THEN %(last)s ELSE 0 END, %(now)s)
    ON CONFLICT (tenant_id, backend) DO UPDATE
        SET last_sequence = %(last)s, updated_at = %(now)s
        WHERE mark.last_sequence >= %(first)s - 1 AND mark.last_sequence < %(last)s
    RETURNING mark.last_sequence
"""  # noqa: S608 - the table name is the model's; every value is a parameter


def index_progress_advance(*, tenant_id: int, backend: str, first: int, last: int) -> bool:
    """Move the mark to ``last`` if ``first..last`` continues it; True when it moved.

    Conditional, so two workers finishing batches out of order never move the mark past a
    batch that is not indexed: the later batch simply leaves it to the sweep.
    """
    params = {
        "tenant_id": tenant_id,
        "backend": backend,
        "first": first,
        "last": last,
        "now": timezone.now(),
    }
    with connection.cursor() as cursor:
        cursor.execute(_ADVANCE_SQL, params)
        row = cursor.fetchone()
    return row is not None and row[0] == last


def events_index(*, tenant_id: int, event_ids: list[str], first_sequence: int | None = None) -> int:
    """Index these events of one tenant into every backend; PostgreSQL first, then the rest.

    ``first_sequence`` (from ``events_ingested``) says the ids are stored with consecutive
    sequences from it, which spares reading them back (13 % of the worker's time in the
    batch benchmark); without it they are looked up. Raises when PostgreSQL fails (the task
    retries; what was done stays done, since indexing is idempotent by event id), or when
    another backend fails in a way that is not an outage (a bug). Elasticsearch being away
    (``BACKEND_UNAVAILABLE``) is left to the sweep, in one throttled line.
    """
    if first_sequence is not None and event_ids:
        ids = [str(pk) for pk in event_ids]
        first, last, contiguous = first_sequence, first_sequence + len(ids) - 1, True
    else:
        rows = list(
            AuditEvent.objects.filter(tenant_id=tenant_id, id__in=event_ids)
            .order_by("sequence")
            .values_list("id", "sequence")
        )
        if not rows:
            return 0
        ids = [str(pk) for pk, _ in rows]
        first, last = rows[0][1], rows[-1][1]
        contiguous = last - first + 1 == len(rows)
    for backend in index_backends():
        options = {}
        if backend.name == Backend.ELASTICSEARCH:
            # This runs right after an ingest, in the worker processes ingestion shares: a
            # bulk slower than this is the sweep's (30 s), so a black-holed cluster holds a
            # process for seconds, not WRITE_TIMEOUT (and not at all once the breaker opens).
            options["timeout"] = settings.TRACELEDGER_SEARCH_INDEX_TIMEOUT
        try:
            _send(backend, event_ids=ids, **options)
        except BACKEND_UNAVAILABLE as exc:
            # Only Elasticsearch raises these, and PostgreSQL (first) has the events by now:
            # searches find them in the fallback, and the sweep indexes them from this
            # backend's own mark once it answers. Retrying here only waited on the outage
            # again, five times per ingest batch, and ended in an ERROR with a traceback.
            index_logger.warning(
                "search indexing left to the sweep: %s unavailable (%s)",
                backend.name,
                one_line(exc),
                extra={"backend": backend.name, "events": len(ids), "error": repr(exc)},
            )
            continue
        if contiguous:
            index_progress_advance(
                tenant_id=tenant_id, backend=backend.name, first=first, last=last
            )
    return len(ids)


def _batches_after(
    *, tenant_id: int, after: int, since: datetime | None = None, batch_size: int = BATCH_SIZE
) -> Iterator[list[tuple[str, int]]]:
    """(id, sequence) batches of one tenant's events with sequence > after, in order."""
    while True:
        qs = AuditEvent.objects.filter(tenant_id=tenant_id, sequence__gt=after)
        if since is not None:
            qs = qs.filter(received_at__gte=since)
        batch = [
            (str(pk), seq)
            for pk, seq in qs.order_by("sequence").values_list("id", "sequence")[:batch_size]
        ]
        if not batch:
            return
        yield batch
        after = batch[-1][1]


def search_sweep(*, max_batches: int = 50, batch_size: int = BATCH_SIZE) -> dict[str, int]:
    """Index whatever is behind each tenant's mark, per backend; returns events per backend.

    Bounded by ``max_batches`` per run (the next run continues). A backend that is away
    (``BACKEND_UNAVAILABLE``) is skipped for the rest of this run, in one line; the others go
    on. One that fails otherwise (a bug) is skipped too, and its error raised once the others
    are done. The database being away raises at once: nothing can be swept without it.
    """
    failures: dict[str, Exception] = {}
    done = _sweep(max_batches=max_batches, batch_size=batch_size, failures=failures)
    for error in failures.values():
        if not isinstance(error, BACKEND_UNAVAILABLE):
            raise error
    return done


def _sweep(*, max_batches: int, batch_size: int, failures: dict[str, Exception]) -> dict[str, int]:
    done: dict[str, int] = {}
    budget = max_batches
    alias_ready = False
    for tenant_id in Tenant.objects.values_list("pk", flat=True):
        for backend in index_backends():
            if backend.name in failures:
                continue
            progress = index_progress_get(tenant_id=tenant_id, backend=backend.name)
            try:
                if backend.name == Backend.ELASTICSEARCH and not alias_ready:
                    from search.backends.elasticsearch import alias_ensure
                    from search.breaker import es_probe

                    # Whether it answers at all, within a search's timeout, before the calls
                    # that may wait WRITE_TIMEOUT: a black-holed cluster costs the sweep (and
                    # the worker process it holds) a second per run, not 30.
                    es_probe()
                    # A fresh cluster gets its index and alias from the first sweep.
                    alias_ensure()
                    alias_ready = True
                for batch in _batches_after(
                    tenant_id=tenant_id, after=progress.last_sequence, batch_size=batch_size
                ):
                    _send(backend, event_ids=[pk for pk, _ in batch])
                    # Everything up to this batch's last sequence is now indexed.
                    IndexProgress.objects.filter(pk=progress.pk).update(
                        last_sequence=Greatest(F("last_sequence"), batch[-1][1]),
                        updated_at=timezone.now(),
                    )
                    done[backend.name] = done.get(backend.name, 0) + len(batch)
                    budget -= 1
                    if budget <= 0:
                        return done
            except BACKEND_UNAVAILABLE as exc:
                failures[backend.name] = exc
                sweep_logger.warning(
                    "search sweep skips %s: unavailable (%s); retrying on the next run",
                    backend.name,
                    one_line(exc),
                    extra={"backend": backend.name, "error": repr(exc)},
                )
            except (OperationalError, InterfaceError):
                raise  # the database: the caller's to report
            except Exception as exc:  # a bug: raised by search_sweep once the others are done
                failures[backend.name] = exc
    return done


def reindex_run_start(*, backend: str, since: datetime | None, restart: bool) -> ReindexRun:
    """The unfinished run with the same arguments (resume), or a new one."""
    unfinished = ReindexRun.objects.filter(backend=backend, since=since, finished_at=None)
    if restart:
        unfinished.update(finished_at=timezone.now())
    run = unfinished.order_by("-started_at").first()
    if run is None:
        run = ReindexRun.objects.create(backend=backend, since=since)
    return run


def reindex_total(*, run: ReindexRun) -> int:
    """Events left to index in this run (for the progress bar)."""
    total = 0
    for tenant_id in Tenant.objects.values_list("pk", flat=True):
        qs = AuditEvent.objects.filter(
            tenant_id=tenant_id, sequence__gt=run.cursor.get(str(tenant_id), 0)
        )
        if run.since is not None:
            qs = qs.filter(received_at__gte=run.since)
        total += qs.count()
    return total


def reindex_batches(
    *,
    run: ReindexRun,
    backend: SearchBackend,
    index: str | None = None,
    batch_size: int = BATCH_SIZE,
) -> Iterator[int]:
    """Index the run's events batch by batch, saving the cursor after each; yields counts.

    Interrupted, the next run with the same arguments resumes after the last saved batch.
    Events stored meanwhile are included: each tenant is read forward until nothing is left.
    """
    options = {"overwrite": True}
    if index:
        options["index"] = index
    for tenant_id in Tenant.objects.values_list("pk", flat=True):
        key = str(tenant_id)
        for batch in _batches_after(
            tenant_id=tenant_id,
            after=run.cursor.get(key, 0),
            since=run.since,
            batch_size=batch_size,
        ):
            _send(backend, event_ids=[pk for pk, _ in batch], **options)
            run.cursor[key] = batch[-1][1]
            run.save(update_fields=["cursor"])
            yield len(batch)


def reindex_run_finish(*, run: ReindexRun) -> None:
    """Close the run; a full run (no ``since``) also moves the sync marks up to its cursor,
    since it indexed every event up to there, so the sweep does not index them again."""
    if run.since is None:
        for tenant_id, last in run.cursor.items():
            index_progress_get(tenant_id=int(tenant_id), backend=run.backend)
            IndexProgress.objects.filter(tenant_id=int(tenant_id), backend=run.backend).update(
                last_sequence=Greatest(F("last_sequence"), last), updated_at=timezone.now()
            )
    run.finished_at = timezone.now()
    run.save(update_fields=["finished_at"])
