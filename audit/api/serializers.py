"""The stored event as the API returns it (ARCHITECTURE §4 plus the stored fields).

One shape for detail, list, search and the JSONL export: ``event_document`` builds it from a
row (``EVENT_VALUES`` of ``.values()``) or a model instance, and the serializer's
``to_representation`` is that function. The declared fields exist for validation-free output
and for the OpenAPI schema; ``test_api_read`` checks that both name the same keys.
The offline verifier (``tools/verify_export.py``) reads exactly these names.
"""

from django.db.models import F
from rest_framework import serializers

from audit.ledger.canonical import format_timestamp
from audit.models import AuditEvent

# Every timestamp is UTC with microseconds, always: fixed width, sorts as text, and the very
# text the ledger hashes (``format_timestamp``, shared). This pattern only documents it in the
# schema: strftime would write year 999 as "999", not "0999".
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

# Every stored column but stored_at, which is not part of an event's public shape
# (ARCHITECTURE §4).
EVENT_VALUES = tuple(
    field.attname for field in AuditEvent._meta.concrete_fields if field.name != "stored_at"
)


def event_rows(queryset):
    """``queryset.values()`` with every field ``event_document`` needs (no model instances)."""
    return queryset.values(*EVENT_VALUES, tenant_slug=F("tenant__slug"))


def event_document(row) -> dict:
    """The event as a JSON-ready dict, from an ``event_rows`` row or an ``AuditEvent``."""
    if isinstance(row, AuditEvent):
        event = row
        row = {name: getattr(event, name) for name in EVENT_VALUES}
        row["tenant_slug"] = event.tenant.slug
    target = None
    if row["target_id"] or row["target_type"] or row["target_name"]:
        target = {"id": row["target_id"], "type": row["target_type"], "name": row["target_name"]}
    return {
        "id": str(row["id"]),
        "tenant": row["tenant_slug"],
        "event_id": row["event_id"],
        "occurred_at": format_timestamp(row["occurred_at"]),
        "received_at": format_timestamp(row["received_at"]),
        "action": row["action"],
        "outcome": row["outcome"],
        "severity": row["severity"],
        "actor": {"id": row["actor_id"], "type": row["actor_type"], "name": row["actor_name"]},
        "target": target,
        "source_ip": row["source_ip"],
        "user_agent": row["user_agent"],
        "description": row["description"],
        "metadata": row["metadata"],
        "sequence": row["sequence"],
        "prev_hash": row["prev_hash"],
        "hash": row["hash"],
    }


class PartySerializer(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.CharField()
    name = serializers.CharField(allow_blank=True)


class AuditEventOutputSerializer(serializers.Serializer):
    """Read-only: the stored event. ``target`` is null when the event has no target."""

    id = serializers.UUIDField()
    tenant = serializers.SlugField(help_text="The tenant's slug.")
    event_id = serializers.CharField()
    occurred_at = serializers.DateTimeField(format=TIMESTAMP_FORMAT)
    received_at = serializers.DateTimeField(format=TIMESTAMP_FORMAT)
    action = serializers.CharField()
    outcome = serializers.ChoiceField(choices=["success", "failure", "unknown"])
    severity = serializers.ChoiceField(choices=["info", "notice", "warning", "critical"])
    actor = PartySerializer()
    target = PartySerializer(allow_null=True)
    source_ip = serializers.IPAddressField(allow_null=True)
    user_agent = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    metadata = serializers.DictField()
    sequence = serializers.IntegerField(help_text="Per-tenant, gap-free position in the chain.")
    prev_hash = serializers.CharField(help_text="Hash of the previous event (hex SHA-256).")
    hash = serializers.CharField(help_text="SHA-256(prev_hash || canonical JSON), hex.")

    def to_representation(self, instance) -> dict:
        return event_document(instance)
