"""Removing retention-purged events from the search index (docs/search.md, "Retention purges").

A purge (``audit.ledger.services.events_purge``) deletes a prefix of a tenant's chain. Audit
does not know the search app, so once the purge commits it sends ``events_purged``, and
``search.receivers.remove_purged`` calls ``purged_remove`` here, in the purging process:

- PostgreSQL: the tenant's entries whose event no longer exists (an anti-join: entries hold
  no sequence), which also takes whatever an earlier purge left behind;
- Elasticsearch: a delete-by-query of the tenant's documents with ``sequence <= through``.

What is to be removed is recorded first (``PurgeCleanup.purged_through``, per tenant and
backend) and marked done (``removed_through``) only once the backend has confirmed it. So a
backend that is away, or a process that dies in between, leaves the row behind its target,
and the purge sweep (``search.purge_sweep``, every 60 s) retries it. ``reindex_search``
removes what is left whatever the rows say (``purge_catch_up``).

Until then nothing of a purged event is *shown*: searches read events back from the events
table. But the words the purge was meant to remove stay in the index, which is why this
exists at all.
"""

import logging
from dataclasses import dataclass

import pybreaker
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Max
from django.db.models.functions import Greatest
from django.utils import timezone
from elastic_transport import TransportError
from elasticsearch import ApiError, NotFoundError

from audit.models import Checkpoint
from audit.models.ledger import CheckpointKind
from search.backends import index_backends
from search.backends.base import SearchBackend
from search.breaker import ElasticsearchUnavailable, es_call, es_probe
from search.documents import INDEX_ALIAS
from search.models import Backend, EventSearchEntry, PurgeCleanup
from traceledger.log_throttle import one_line

logger = logging.getLogger(__name__)
# The sweep's lines, once per backend and interval while a backend stays away (LOGGING).
sweep_logger = logging.getLogger(f"{__name__}.sweep")


def sweep_seconds() -> float:
    """How often the purge sweep runs (its beat entry, ``search-purge-sweep``)."""
    return float(settings.CELERY_BEAT_SCHEDULE["search-purge-sweep"]["schedule"])


class PurgeIncomplete(RuntimeError):
    """Elasticsearch answered the delete-by-query, but did not delete every match (failed
    shards or batches, a timeout, documents changed meanwhile)."""


# A backend (or the database) away or refusing: one log line, no traceback; the row stays
# behind its target and the sweep retries. Anything else is a bug, logged with its traceback.
OUTAGES = (
    TransportError,
    ElasticsearchUnavailable,  # a 5xx or 429 answer; any other 4xx is a bug
    pybreaker.CircuitBreakerError,
    PurgeIncomplete,
    OperationalError,
    InterfaceError,
)

# The tenant's entries whose event is gone, with how many per tenant. NOT EXISTS against the
# events' primary key: the planner makes it a hash anti-join, one pass over each table.
_ORPHANS_SQL = f"""
    WITH gone AS (
        DELETE FROM {EventSearchEntry._meta.db_table} s
        WHERE {{tenant}} NOT EXISTS (SELECT 1 FROM audit_auditevent e WHERE e.id = s.event_id)
        RETURNING s.tenant_id
    )
    SELECT tenant_id, count(*) FROM gone GROUP BY tenant_id
"""  # noqa: S608 - the table name is the model's; the tenant is a parameter


@dataclass(frozen=True)
class BackendCleanup:
    """What one backend removed of a tenant's purged events, or why it could not."""

    backend: str
    through_sequence: int
    removed: int | None = None  # entries / documents removed; None when it failed
    error: str = ""

    @property
    def done(self) -> bool:
        return not self.error

    def message(self) -> str:
        what = _WHAT[self.backend]
        if self.done:
            return (
                f"search: removed {self.removed} {what} of the purged events "
                f"(sequences up to {self.through_sequence})"
            )
        return (
            f"search: the {what} of the purged events (sequences up to "
            f"{self.through_sequence}) were NOT removed ({self.error}). They are never shown "
            f"(results are read back from the events table), and the purge sweep "
            f"(search.purge_sweep, every {sweep_seconds():.0f} s on the worker) retries until "
            f"{self.backend} takes it; `manage.py reindex_search --backend {self.backend}` "
            "removes them too"
        )


_WHAT = {
    Backend.POSTGRESQL: "PostgreSQL search entries",
    Backend.ELASTICSEARCH: "Elasticsearch documents",
}


def purged_query(*, tenant_id: int, through_sequence: int) -> dict:
    """The Elasticsearch query of a tenant's documents up to a purge's last sequence (every
    earlier purge's too: sequences only grow, so the purged part is always a prefix)."""
    return {
        "bool": {
            "filter": [
                {"term": {"tenant": tenant_id}},
                {"range": {"sequence": {"lte": through_sequence}}},
            ]
        }
    }


def purged_documents_delete(*, tenant_id: int, through_sequence: int) -> int:
    """Delete the tenant's purged documents from Elasticsearch; how many were deleted.

    Raises ``PurgeIncomplete`` unless every match was deleted, or the client's error: the
    caller leaves the cleanup to be retried. ``refresh`` so that searches stop matching them
    at once (hits PostgreSQL no longer has were dropped from result pages, which then came
    back short); ``conflicts=proceed`` so one changed document does not stop the rest.
    """
    from search.backends.elasticsearch import es_client

    try:
        # A probe first (1 s), then the delete: a purge command starts with its breaker
        # closed, and a black-holed cluster held it 30 s on the delete before it said so.
        es_probe()
        response = es_call(
            es_client(write=True).delete_by_query,
            index=INDEX_ALIAS,
            query=purged_query(tenant_id=tenant_id, through_sequence=through_sequence),
            conflicts="proceed",
            refresh=True,
            wait_for_completion=True,
        )
    except NotFoundError as exc:
        if _error_type(exc) != "index_not_found_exception":
            raise
        return 0  # no alias: nothing was ever indexed, so nothing is left to delete
    body = getattr(response, "body", response)  # the client's ObjectApiResponse, or a dict
    if body.get("timed_out") or body.get("failures") or body.get("version_conflicts"):
        raise PurgeIncomplete(
            f"delete-by-query deleted {body.get('deleted', 0)} documents but "
            f"timed_out={body.get('timed_out')}, "
            f"version_conflicts={body.get('version_conflicts')}, "
            f"failures={str(body.get('failures'))[:300]}"
        )
    return int(body.get("deleted", 0))


def _error_type(exc: ApiError) -> str:
    error = exc.body.get("error") if isinstance(exc.body, dict) else None
    return error.get("type", "") if isinstance(error, dict) else ""


def orphan_entries_delete(*, tenant_id: int | None = None) -> dict[int, int]:
    """Delete the PostgreSQL entries whose event no longer exists (of one tenant, or all);
    how many per tenant. Only a retention purge removes events, so these are purged ones."""
    tenant, params = ("s.tenant_id = %s AND", [tenant_id]) if tenant_id is not None else ("", [])
    with connection.cursor() as cursor:
        cursor.execute(_ORPHANS_SQL.format(tenant=tenant), params)
        return dict(cursor.fetchall())


def cleanup_pending(*, tenant_id: int, backend: str, through_sequence: int) -> None:
    """Record that the tenant's events up to ``through_sequence`` must leave ``backend``."""
    # One transaction: a row created but not yet raised to its target reads as done (0 of 0),
    # and the sweep would never retry it.
    with transaction.atomic():
        PurgeCleanup.objects.get_or_create(tenant_id=tenant_id, backend=backend)
        PurgeCleanup.objects.filter(tenant_id=tenant_id, backend=backend).update(
            purged_through=Greatest(F("purged_through"), through_sequence),
            updated_at=timezone.now(),
        )


def _cleanup_done(*, tenant_id: int, backend: str, through_sequence: int) -> None:
    PurgeCleanup.objects.filter(tenant_id=tenant_id, backend=backend).update(
        removed_through=Greatest(F("removed_through"), through_sequence),
        updated_at=timezone.now(),
    )


def _remove(backend: SearchBackend, *, tenant_id: int, through_sequence: int) -> int:
    """Remove the tenant's purged events from one backend and mark it; raises on failure."""
    if backend.name == Backend.POSTGRESQL:
        # The purge committed before this runs, so the anti-join sees its events gone.
        removed = orphan_entries_delete(tenant_id=tenant_id).get(tenant_id, 0)
    else:
        removed = purged_documents_delete(tenant_id=tenant_id, through_sequence=through_sequence)
    _cleanup_done(tenant_id=tenant_id, backend=backend.name, through_sequence=through_sequence)
    return removed


def _remove_logged(
    backend: SearchBackend, *, tenant_id: int, through_sequence: int, log: logging.Logger
) -> BackendCleanup:
    try:
        removed = _remove(backend, tenant_id=tenant_id, through_sequence=through_sequence)
    except Exception as exc:  # never raised into the purge (committed) or the sweep's others
        result = BackendCleanup(
            backend=backend.name, through_sequence=through_sequence, error=one_line(exc)
        )
        log.warning(
            "purged events not removed from %s; the purge sweep retries",
            backend.name,
            extra={"backend": backend.name, "tenant_id": tenant_id, "error": repr(exc)},
            # An outage is one line; anything else is a bug, with its traceback.
            exc_info=not isinstance(exc, OUTAGES),
        )
        return result
    if removed:
        logger.info(
            "purged events removed from %s",
            backend.name,
            extra={"backend": backend.name, "tenant_id": tenant_id, "removed": removed},
        )
    return BackendCleanup(backend=backend.name, through_sequence=through_sequence, removed=removed)


def purged_remove(*, tenant_id: int, through_sequence: int) -> list[BackendCleanup]:
    """After a purge committed: remove the tenant's events up to ``through_sequence`` from
    every configured backend; one result per backend.

    The work is recorded first for every backend, so whatever fails afterwards is retried by
    the sweep. A backend that fails is reported in its result, not raised. Raises only when
    the recording itself fails (the database gone right after the commit): then nothing
    records the work, and ``reindex_search`` is the way to remove it.
    """
    backends = index_backends()
    for backend in backends:
        cleanup_pending(
            tenant_id=tenant_id, backend=backend.name, through_sequence=through_sequence
        )
    return [
        _remove_logged(backend, tenant_id=tenant_id, through_sequence=through_sequence, log=logger)
        for backend in backends
    ]


def purge_sweep() -> dict[str, int]:
    """Retry every cleanup left behind its target, for the configured backends; how many
    tenants were caught up per backend. A backend that fails is skipped for the rest of the
    run (the next one retries). Rows of a backend that is not configured are left alone."""
    backends = {backend.name: backend for backend in index_backends()}
    pending = PurgeCleanup.objects.filter(
        backend__in=list(backends), removed_through__lt=F("purged_through")
    ).order_by("tenant_id", "backend")
    failed: set[str] = set()
    done: dict[str, int] = {}
    for row in pending:
        if row.backend in failed:
            continue
        result = _remove_logged(
            backends[row.backend],
            tenant_id=row.tenant_id,
            through_sequence=row.purged_through,
            log=sweep_logger,
        )
        if result.done:
            done[row.backend] = done.get(row.backend, 0) + 1
        else:
            failed.add(row.backend)
    return done


def purged_through_by_tenant() -> dict[int, int]:
    """The last purged sequence of every tenant that was ever purged (its latest ``purge``
    checkpoint: every event up to it is gone)."""
    return dict(
        Checkpoint.objects.filter(kind=CheckpointKind.PURGE)
        .values("tenant_id")
        .annotate(through=Max("sequence"))
        .values_list("tenant_id", "through")
    )


def purge_catch_up(*, backend: SearchBackend) -> dict[int, int]:
    """Remove from ``backend`` everything of every purged event, whatever the cleanup rows
    say (``reindex_search``): what a failed cleanup left, what a purge made before cleanups
    existed left, what an index write racing a purge put back. Removed per tenant; raises on
    an Elasticsearch failure (the caller reports it)."""
    # Read before removing: a purge committing during the removal is marked done only by
    # its own cleanup, never by this pass, which may not have seen it.
    targets = purged_through_by_tenant()
    if backend.name == Backend.POSTGRESQL:
        removed = orphan_entries_delete()
    else:
        removed = {
            tenant_id: purged_documents_delete(tenant_id=tenant_id, through_sequence=through)
            for tenant_id, through in targets.items()
        }
    for tenant_id, through in targets.items():
        _cleanup_done(tenant_id=tenant_id, backend=backend.name, through_sequence=through)
    return removed
