"""Search state kept outside the append-only events table (ARCHITECTURE §7).

``EventSearchEntry`` holds the PostgreSQL full-text vector of one event, built by the indexer
(``search.services.indexing``), never on the ingest hot path: a GIN index on the events
table would cost ingest throughput on every insert (see docs/search.md).
``IndexProgress`` is the sync high-water mark per tenant and backend, ``PurgeCleanup`` what a
retention purge left to remove from each backend (``search.purge``).
"""

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models


class EventSearchEntry(models.Model):
    # No database FK constraint: retention purges of the events table must not depend on
    # the search app (audit never imports search). A purged event's entry still holds its
    # words (names, e-mail addresses, description), so the search app removes it once the
    # purge commits (``search.purge``); searches join to the event, so until then it is never
    # shown, but the data the purge was meant to remove is still there.
    event = models.OneToOneField(
        "audit.AuditEvent",
        on_delete=models.DO_NOTHING,
        primary_key=True,
        db_constraint=False,
        related_name="search_entry",
    )
    tenant_id = models.BigIntegerField()
    vector = SearchVectorField()
    indexed_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [GinIndex(fields=["vector"], name="searchentry_vector")]

    def __str__(self) -> str:
        return f"search entry of {self.event_id}"


class Backend(models.TextChoices):
    POSTGRESQL = "postgresql"
    ELASTICSEARCH = "elasticsearch"


class IndexProgress(models.Model):
    """Every event of ``tenant`` with ``sequence <= last_sequence`` is in ``backend``."""

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="+")
    backend = models.CharField(max_length=16, choices=Backend.choices)
    last_sequence = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "backend"], name="indexprogress_unique_tenant_backend"
            )
        ]

    def __str__(self) -> str:
        return f"{self.backend} index of tenant {self.tenant_id} at {self.last_sequence}"


class PurgeCleanup(models.Model):
    """A retention purge's removal from one search backend: every entry (document) of
    ``tenant``'s events with ``sequence <= purged_through`` must go, and everything up to
    ``removed_through`` is gone. Behind means still to do: the purge sweep retries it."""

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="+")
    backend = models.CharField(max_length=16, choices=Backend.choices)
    purged_through = models.BigIntegerField(default=0)
    removed_through = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "backend"], name="purgecleanup_unique_tenant_backend"
            )
        ]

    def __str__(self) -> str:
        return (
            f"{self.backend} purge cleanup of tenant {self.tenant_id}: "
            f"{self.removed_through} of {self.purged_through}"
        )


class ReindexRun(models.Model):
    """A ``reindex_search`` run, kept so an interrupted run resumes where it stopped."""

    backend = models.CharField(max_length=16, choices=Backend.choices)
    since = models.DateTimeField(null=True, blank=True)
    # Concrete Elasticsearch index a full rebuild writes into before the alias swap.
    target_index = models.CharField(max_length=200, blank=True, default="")
    # {tenant_id: last indexed sequence}
    cursor = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"reindex {self.backend} since {self.since or 'the beginning'}"
