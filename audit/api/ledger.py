"""GET /api/v1/ledger/verify, /ledger/checkpoints and /ledger/public-key (ARCHITECTURE §3).

Thin views: the tenant comes from ``audit.selectors.read_tenant_id`` (a superuser names it
with ``tenant=``), the work from ``audit.ledger``.
"""

import re

from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import generics, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import CanRead
from accounts.principal import get_principal
from accounts.ratelimits import HeavyReadRateLimit, ReadRateLimit
from audit.api.pagination import MAX_PAGE_SIZE, StrictCursorPagination
from audit.filters import EMPTY_MEANS_ABSENT, TENANT_PARAMETER, plain_int, reject_unknown_params
from audit.ledger import selectors
from audit.ledger.canonical import format_timestamp
from audit.ledger.keyring import public_key_to_pem, retired_keys
from audit.ledger.signing import key_id, public_key_pem
from audit.ledger.verify import VERIFY_MAX_EVENTS, ledger_verify, ledger_verify_last
from audit.selectors import read_tenant_id
from traceledger.api.responses import READ_ERRORS

# These operations need the ledger's public key (verify checks checkpoint signatures with
# it), never the private key; a process that finds neither answers 503 rather than
# inventing one (audit.ledger.signing).
_KEY_UNAVAILABLE = {
    503: OpenApiResponse(
        description="The database is unreachable, the credential or the record of this "
        "access cannot be checked or kept right now, or the ledger's public key is not "
        "available to this process (the signer makes the key, `manage.py sign_checkpoints` "
        "too; `make run` and compose run it at start); see `Retry-After`."
    )
}

VERIFY_PARAMS = frozenset({"from_sequence", "to_sequence", "last"})


class PlainIntegerField(serializers.IntegerField):
    """DRF's IntegerField reading only plain ASCII digits (``plain_int``), with an optional
    leading ``-``."""

    def to_internal_value(self, data):
        # "-1" is a plain integer, only out of range: it gets the min_value message as "0"
        # does, not "A valid integer is required."
        if isinstance(data, str) and plain_int(data.removeprefix("-")) is None:
            self.fail("invalid")
        return super().to_internal_value(data)


class VerifyInputSerializer(serializers.Serializer):
    from_sequence = PlainIntegerField(required=False, min_value=1, max_value=2**63 - 1)
    to_sequence = PlainIntegerField(required=False, min_value=1, max_value=2**63 - 1)
    last = PlainIntegerField(required=False, min_value=1, max_value=VERIFY_MAX_EVENTS)
    tenant = serializers.CharField(required=False, allow_blank=True)

    def validate(self, attrs):
        if "last" in attrs and ("from_sequence" in attrs or "to_sequence" in attrs):
            raise ValidationError({"last": ["Use either last or from_sequence/to_sequence."]})
        low, high = attrs.get("from_sequence"), attrs.get("to_sequence")
        if low is not None and high is not None:
            if high < low:
                raise ValidationError({"to_sequence": ["Must not be below from_sequence."]})
            if high - low + 1 > VERIFY_MAX_EVENTS:
                raise ValidationError(
                    {"to_sequence": [f"A range covers at most {VERIFY_MAX_EVENTS} events."]}
                )
        return attrs


def _integer_schema(name: str) -> dict:
    """The OpenAPI schema of a ``VerifyInputSerializer`` integer: the bounds it enforces."""
    field = VerifyInputSerializer().fields[name]
    schema = {"type": "integer", "minimum": field.min_value, "maximum": field.max_value}
    return {**schema, "format": "int64"} if field.max_value > 2**31 - 1 else schema


class VerifyOutputSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    checked = serializers.IntegerField(help_text="Events whose hash was recomputed.")
    first_bad_sequence = serializers.IntegerField(
        allow_null=True, help_text="The first sequence that does not verify; null when ok."
    )
    reason = serializers.CharField(help_text="Why the chain breaks there; empty when ok.")
    from_sequence = serializers.IntegerField(
        help_text="First sequence of the range verified (one inside a prefix removed by a "
        "retention purge comes back as the first sequence after it)."
    )
    to_sequence = serializers.IntegerField(
        allow_null=True,
        help_text="Last sequence of the range verified: the requested to_sequence, or the "
        "chain head when none was asked or the one asked lies beyond it. Null when there was "
        "no event to verify, or when a checkpoint's signature failed before the range was read.",
    )
    checkpoints_checked = serializers.IntegerField()
    whole_chain = serializers.BooleanField(
        help_text="True when the range verified ran from the chain's start (or the first "
        f"event after a retention purge) to its head. False for the default last "
        f"{VERIFY_MAX_EVENTS:,} events of a longer chain: ok then says nothing of the "
        "events before from_sequence (verify them with ranges, manage.py verify_ledger, or "
        "an export and the offline tool)."
    )


class LedgerVerifyView(APIView):
    permission_classes = [IsAuthenticated, CanRead]
    # The read limit, and a tighter one: each request may cost seconds of database time.
    throttle_classes = [ReadRateLimit, HeavyReadRateLimit]

    @extend_schema(
        operation_id="ledger_verify",
        summary=f"Verify the tenant's hash chain (at most {VERIFY_MAX_EVENTS:,} events a request)",
        description=(
            "Recomputes the chain over a bounded range and checks the signed checkpoints in "
            f"it. Without parameters: the last {VERIFY_MAX_EVENTS} events (``last=N`` for "
            "fewer). ``from_sequence``/``to_sequence`` choose a range of at most "
            f"{VERIFY_MAX_EVENTS} events; ``from_sequence`` alone verifies "
            f"{VERIFY_MAX_EVENTS} events from there, ``to_sequence`` alone the "
            f"{VERIFY_MAX_EVENTS} events up to it (or up to the head). A range starts from "
            "the stored hash of the event before it. The response's "
            "``from_sequence``/``to_sequence`` is the range actually verified: a "
            "``to_sequence`` beyond the chain head comes back as the head. The whole chain: "
            "``manage.py verify_ledger``. Unknown parameters are a 400."
        ),
        parameters=[
            OpenApiParameter(
                "from_sequence",
                _integer_schema("from_sequence"),
                description=f"First sequence. {EMPTY_MEANS_ABSENT}",
            ),
            OpenApiParameter(
                "to_sequence",
                _integer_schema("to_sequence"),
                description=f"Last sequence. {EMPTY_MEANS_ABSENT}",
            ),
            OpenApiParameter(
                "last",
                _integer_schema("last"),
                description=f"Verify the last N events (1 to {VERIFY_MAX_EVENTS}); not "
                f"with from_sequence or to_sequence (400). {EMPTY_MEANS_ABSENT}",
            ),
            TENANT_PARAMETER,
        ],
        responses={200: VerifyOutputSerializer, **READ_ERRORS, **_KEY_UNAVAILABLE},
    )
    def get(self, request):
        reject_unknown_params(
            request.query_params, extra=VERIFY_PARAMS, paging=False, filters=False
        )
        params = VerifyInputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        tenant_id = read_tenant_id(
            principal=get_principal(request), tenant_slug=data.get("tenant"), required=True
        )
        low, high = data.get("from_sequence"), data.get("to_sequence")
        if low is None and high is None:
            last = data.get("last", VERIFY_MAX_EVENTS)
            result = ledger_verify_last(tenant_id=tenant_id, last=last)
            return Response(VerifyOutputSerializer(result.as_dict()).data)
        # A range beyond the head is named by the parameter the client sent.
        beyond = "from_sequence" if low is not None else "to_sequence"
        if low is None:
            # The events ending at to_sequence, or at the head when it lies beyond.
            head = selectors.chain_head_get(tenant_id=tenant_id)
            low = max(min(high, head.sequence) - VERIFY_MAX_EVENTS + 1, 1)
        elif high is None:
            high = low + VERIFY_MAX_EVENTS - 1
        _range_check(tenant_id=tenant_id, low=low, high=high, beyond=beyond)
        result = ledger_verify(tenant_id=tenant_id, from_sequence=low, to_sequence=high)
        return Response(VerifyOutputSerializer(result.as_dict()).data)


def _range_check(*, tenant_id: int, low: int, high: int, beyond: str) -> None:
    """A range with no stored event to check is a 400, not ``ok: true, checked: 0``;
    ``beyond`` names the parameter that put it past the head."""
    head = selectors.chain_head_get(tenant_id=tenant_id)
    if low > head.sequence:
        raise ValidationError(
            {beyond: [f"Beyond the chain's head ({head.sequence}): nothing to verify."]}
        )
    base = selectors.chain_base(tenant_id=tenant_id)
    if high <= base.sequence:
        raise ValidationError(
            {
                "to_sequence": [
                    f"Sequences up to {base.sequence} were removed by a retention purge; "
                    f"verification starts at {base.sequence + 1}."
                ]
            }
        )


def _keys() -> dict:
    """The current public key and the retired ones (a checkpoint's ``key_id`` names which)."""
    current = key_id()
    return {
        "key_id": current,
        "public_key": public_key_pem(),
        "retired_keys": [
            {"key_id": retired_id, "public_key": public_key_to_pem(key)}
            for retired_id, key in retired_keys().items()
            if retired_id != current
        ],
    }


_RETIRED_KEYS_SCHEMA = {
    "type": "array",
    "description": (
        "Rotated-out keys (PEM, with their key_id): each still verifies the checkpoints "
        "whose key_id it has."
    ),
    "items": {
        "type": "object",
        "properties": {"key_id": {"type": "string"}, "public_key": {"type": "string"}},
        "required": ["key_id", "public_key"],
    },
}


class RetiredKeySerializer(serializers.Serializer):
    key_id = serializers.CharField()
    public_key = serializers.CharField()


class CheckpointSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    tenant_id = serializers.IntegerField(help_text="Signed as part of the message.")
    tenant = serializers.CharField(
        source="tenant.slug",
        read_only=True,
        help_text="The tenant's slug, as an export's events name it: a label for telling one "
        "tenant's checkpoints from another's (tools/verify_export.py compares it with the "
        "export's tenant), not signed; the signature binds tenant_id.",
    )
    kind = serializers.CharField(help_text="periodic, or purge (the chain resumes after it).")
    sequence = serializers.IntegerField()
    hash = serializers.CharField()
    signed_at = serializers.DateTimeField()
    signature = serializers.CharField(help_text="Ed25519 signature, hex.")
    key_id = serializers.CharField(help_text="SHA-256 of the raw public key, hex.")
    details = serializers.JSONField(help_text="Signed too; for a purge, what was removed.")

    def to_representation(self, instance):
        data = super().to_representation(instance)
        # Exactly the text that was signed (6 fractional digits, Z), not DRF's rendering.
        data["signed_at"] = format_timestamp(instance.signed_at)
        return data


_CHECKPOINT_POSITION = re.compile(r"[0-9]{1,19}")
_MAX_BIGINT = 2**63 - 1


class CheckpointPagination(StrictCursorPagination):
    """Newest first by id; bad ``page_size`` and ``cursor`` values are a 400 like the event
    list's. The position is DRF's own: the id of the page's boundary checkpoint."""

    ordering = ("-id",)
    page_size_query_description = (
        f"Checkpoints per page, 1 to {MAX_PAGE_SIZE} (default {StrictCursorPagination.page_size}). "
        f"{EMPTY_MEANS_ABSENT}"
    )

    @staticmethod
    def _parse_position(position: str) -> int:
        if _CHECKPOINT_POSITION.fullmatch(position) and int(position) <= _MAX_BIGINT:
            return int(position)
        raise ValidationError({"cursor": ["Invalid cursor."]})

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        response.data.update(_keys())
        return response

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["properties"]["key_id"] = {"type": "string"}
        schema["properties"]["public_key"] = {
            "type": "string",
            "description": "PEM public key that verifies the signatures of its key_id.",
        }
        schema["properties"]["retired_keys"] = _RETIRED_KEYS_SCHEMA
        schema["required"] = [*schema.get("required", []), "key_id", "public_key", "retired_keys"]
        return schema


@extend_schema_view(
    get=extend_schema(
        operation_id="ledger_checkpoints",
        summary="Signed checkpoints of the tenant's chain, newest first",
        description=(
            "Each checkpoint signs (tenant_id, sequence, hash, signed_at, kind, details) "
            "with Ed25519 (its id, key_id and tenant, the slug, are not signed); the page "
            "carries the public key and its key_id, and the retired keys that signed older "
            "checkpoints. See docs/ledger.md. "
            "Follow `next` until it is null. Unknown parameters are a 400."
        ),
        parameters=[TENANT_PARAMETER],
        responses={200: CheckpointSerializer(many=True), **READ_ERRORS, **_KEY_UNAVAILABLE},
    )
)
class LedgerCheckpointListView(generics.ListAPIView):
    permission_classes = [IsAuthenticated, CanRead]
    serializer_class = CheckpointSerializer
    pagination_class = CheckpointPagination
    filter_backends: list = []

    def list(self, request, *args, **kwargs):
        reject_unknown_params(request.query_params, filters=False)
        return super().list(request, *args, **kwargs)

    def get_queryset(self):
        principal = get_principal(self.request)
        tenant_id = read_tenant_id(
            principal=principal,
            tenant_slug=self.request.query_params.get("tenant"),
            required=True,
        )
        return selectors.checkpoint_list(principal=principal, tenant_id=tenant_id)


class LedgerPublicKeyView(APIView):
    permission_classes = [IsAuthenticated, CanRead]

    @extend_schema(
        operation_id="ledger_public_key",
        summary="The Ed25519 public key that verifies checkpoints",
        responses={
            200: inline_serializer(
                "LedgerPublicKey",
                {
                    "key_id": serializers.CharField(),
                    "public_key": serializers.CharField(),
                    "retired_keys": RetiredKeySerializer(
                        many=True, help_text=_RETIRED_KEYS_SCHEMA["description"]
                    ),
                },
            ),
            **READ_ERRORS,
            **_KEY_UNAVAILABLE,
        },
    )
    def get(self, request):
        # No parameters: a misspelt or unsupported one is a 400, as on every other endpoint.
        reject_unknown_params(request.query_params, filters=False, paging=False, tenant=False)
        return Response(_keys())
