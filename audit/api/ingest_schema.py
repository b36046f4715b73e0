"""DRF serializers that *document* ``POST /api/v1/audit-events`` in the OpenAPI schema.

Validation does not run through them: ``audit.validation`` (msgspec) is the validator, about
an order of magnitude cheaper per event (docs/ingest.md).
``audit/tests/test_api_ingest_schema.py`` keeps the two in step (same fields, limits,
choices, action pattern).
"""

from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from audit.validation import MAX_EVENTS_PER_REQUEST

ACTION_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"


# Every optional field also takes null, meaning absent.
class ActorInputSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=256)
    type = serializers.CharField(max_length=64, required=False, allow_null=True, default="user")
    name = serializers.CharField(max_length=256, required=False, allow_blank=True, allow_null=True)


class TargetInputSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=256, required=False, allow_blank=True, allow_null=True)
    type = serializers.CharField(max_length=64, required=False, allow_blank=True, allow_null=True)
    name = serializers.CharField(max_length=256, required=False, allow_blank=True, allow_null=True)


class AuditEventInputSerializer(serializers.Serializer):
    event_id = serializers.CharField(
        max_length=128,
        required=False,
        allow_null=True,
        help_text="Idempotency key, unique per tenant; a UUID is assigned when absent.",
    )
    occurred_at = serializers.DateTimeField(
        help_text="RFC 3339 with an offset; at most 5 minutes in the future. Stored in UTC, "
        "truncated to microseconds."
    )
    action = serializers.RegexField(ACTION_PATTERN, max_length=128)
    outcome = serializers.ChoiceField(
        ["success", "failure", "unknown"], required=False, allow_null=True, default="success"
    )
    severity = serializers.ChoiceField(
        ["info", "notice", "warning", "critical"], required=False, allow_null=True, default="info"
    )
    actor = ActorInputSerializer()
    target = TargetInputSerializer(required=False, allow_null=True)
    source_ip = serializers.IPAddressField(required=False, allow_null=True)
    user_agent = serializers.CharField(
        max_length=512, required=False, allow_blank=True, allow_null=True
    )
    description = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, allow_null=True
    )
    metadata = serializers.DictField(
        required=False,
        allow_null=True,
        help_text="A JSON object, at most 16 KiB serialized, at most 32 nested objects or "
        "arrays (the metadata object is the first); numbers within ±(2^53-1), no NUL "
        "characters.",
    )


INGEST_REQUEST = PolymorphicProxySerializer(
    component_name="AuditEventIngestBody",
    serializers=[
        AuditEventInputSerializer(),
        AuditEventInputSerializer(many=True, min_length=1, max_length=MAX_EVENTS_PER_REQUEST),
    ],
    resource_type_field_name=None,
    many=False,
)


class IngestAcceptedSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Number of events accepted.")
    ids = serializers.ListField(
        child=serializers.UUIDField(),
        help_text="The stored events' ids (`id`), in request order.",
    )


def strict_ingest_body(result, generator, request, public):
    """What drf-spectacular cannot say from the serializers above but ``audit.validation``
    enforces (a drf-spectacular post-processing hook): a body is required, unknown fields
    are refused, a list holds 1 to 1,000 events, ``source_ip`` is an address. Without it a
    client generated from the schema sent bodies the API refused."""
    ingest = result.get("paths", {}).get("/api/v1/audit-events", {}).get("post", {})
    if "requestBody" in ingest:
        ingest["requestBody"]["required"] = True  # no body is a 415, or a 400 if typed JSON
    schemas = result.get("components", {}).get("schemas", {})
    for name in ("AuditEventInputRequest", "ActorInputRequest", "TargetInputRequest"):
        if name in schemas:
            schemas[name]["additionalProperties"] = False
    for variant in schemas.get("AuditEventIngestBodyRequest", {}).get("oneOf", []):
        if variant.get("type") == "array":
            variant.update(minItems=1, maxItems=MAX_EVENTS_PER_REQUEST)
    event = schemas.get("AuditEventInputRequest", {}).get("properties", {})
    if "source_ip" in event:
        event["source_ip"] = {
            "type": "string",
            "nullable": True,
            "maxLength": 64,
            "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
            "description": "An IPv4 or IPv6 address (no zone index); stored compressed.",
            # Swagger UI's "Try it out" filled in "string", which the API refuses.
            "example": "203.0.113.7",
        }
    return result
