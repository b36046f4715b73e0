import uuid

from django.contrib.postgres.indexes import BrinIndex, OpClass
from django.db import models

from audit.models.fields import StoredJSONField


class Outcome(models.TextChoices):
    SUCCESS = "success"
    FAILURE = "failure"
    UNKNOWN = "unknown"


class Severity(models.TextChoices):
    INFO = "info"
    NOTICE = "notice"
    WARNING = "warning"
    CRITICAL = "critical"


class AuditEvent(models.Model):
    """One stored audit event. Append-only: the database refuses UPDATE and DELETE.

    ``id`` and ``received_at`` are assigned by the API before the event is queued, so the
    ids returned in the 202 are the stored ids. ``sequence``/``prev_hash``/``hash`` chain the
    tenant's events (see ``audit/ledger``).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No foreign-key constraint and no index of its own (migration 0006): the constraint's
    # per-row check at commit cost 15-25 % of inserting a row, under the chain-head lock,
    # and every index here leads with tenant_id already. Integrity is kept by the ingest
    # worker, which locks each tenant row FOR KEY SHARE while it inserts, and by a trigger
    # that refuses to delete a tenant that has events.
    tenant = models.ForeignKey(
        "accounts.Tenant",
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    event_id = models.CharField(max_length=128)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField()
    stored_at = models.DateTimeField(auto_now_add=True)
    action = models.CharField(max_length=128)
    outcome = models.CharField(max_length=8, choices=Outcome.choices, default=Outcome.SUCCESS)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.INFO)
    actor_id = models.CharField(max_length=256)
    actor_type = models.CharField(max_length=64, default="user")
    actor_name = models.CharField(max_length=256, blank=True, default="")
    target_id = models.CharField(max_length=256, blank=True, default="")
    target_type = models.CharField(max_length=64, blank=True, default="")
    target_name = models.CharField(max_length=256, blank=True, default="")
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True, default="")
    description = models.TextField(max_length=2000, blank=True, default="")
    metadata = StoredJSONField(default=dict, blank=True)
    # Who handed the event to TraceLedger: "api_key:<prefix>", "user:<id>" or "traceledger"
    # (its own records); "" for events stored before it was kept. Set by the server, never
    # by the event: the actor is whatever the submitter wrote.
    submitted_by = models.CharField(max_length=300, blank=True, default="", db_default="")
    sequence = models.BigIntegerField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "event_id"],
                name="auditevent_unique_event_id_per_tenant",
                violation_error_message="An event with this event_id already exists.",
            ),
            models.UniqueConstraint(
                fields=["tenant", "sequence"], name="auditevent_unique_sequence_per_tenant"
            ),
        ]
        # Every list filter is tenant-scoped and sorted newest first: each index leads with
        # tenant and ends with (occurred_at, id) so the filter *and* the keyset page are served.
        indexes = [
            models.Index(fields=["tenant", "-occurred_at", "-id"], name="auditevent_tenant_time"),
            models.Index(
                fields=["tenant", "actor_id", "-occurred_at"], name="auditevent_tenant_actor"
            ),
            models.Index(
                fields=["tenant", "target_type", "target_id", "-occurred_at"],
                name="auditevent_tenant_target",
            ),
            # text_pattern_ops serves both exact and prefix (LIKE 'x%') action filters.
            models.Index(
                "tenant",
                OpClass("action", name="varchar_pattern_ops"),
                "occurred_at",
                name="auditevent_tenant_action",
            ),
            # The superuser's cross-tenant admin list and dashboard (newest first, last 24 h):
            # without it each is a sort of the whole table (docs/admin.md).
            models.Index(fields=["-occurred_at", "-id"], name="auditevent_time"),
            # Read side (docs/read-performance.md, EXPLAIN on 1.1M rows): target_id without
            # target_type cannot use auditevent_tenant_target (a 135 ms sequential scan).
            models.Index(
                fields=["tenant", "target_id", "-occurred_at"], name="auditevent_tenant_target_id"
            ),
            # Rare values of low-cardinality filters (critical, unknown, a non-user actor type)
            # made the time index read hundreds of thousands of rows per page (up to 0.6 s).
            # Partial indexes skip the common value, so they stay small and cheap to write;
            # the common value itself matches most rows, so the time index serves it.
            models.Index(
                fields=["tenant", "severity", "-occurred_at", "-id"],
                condition=~models.Q(severity="info"),
                name="auditevent_tenant_severity",
            ),
            models.Index(
                fields=["tenant", "outcome", "-occurred_at", "-id"],
                condition=~models.Q(outcome="success"),
                name="auditevent_tenant_outcome",
            ),
            models.Index(
                fields=["tenant", "actor_type", "-occurred_at", "-id"],
                condition=~models.Q(actor_type="user"),
                name="auditevent_tenant_actortype",
            ),
            # The admin dashboard's "stored in the last 15 minutes": rows arrive in
            # stored_at order, so a block-range index is a few pages and costs the
            # insert path next to nothing, where a btree would be one more per row.
            BrinIndex(fields=["stored_at"], name="auditevent_stored_brin"),
        ]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor_type}:{self.actor_id}"
