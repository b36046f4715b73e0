"""The alternative a user would pick: validate with a DRF serializer, insert one row, 201.

A baseline for ``make bench`` only (served by ``bench.settings``, never by the product). It
keeps what a fair comparison needs — the same API-key authentication and scope check, the
same table and indexes — and skips what a plain synchronous design would not have: no
queue, no outbox, no hash chain (``sequence`` is random and unique enough, hashes are zero).
"""

import random
import uuid
from datetime import timedelta

from django.db import IntegrityError
from django.utils import timezone
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import CanIngest
from accounts.principal import get_principal
from audit.models import AuditEvent, Outcome, Severity

ZERO_HASH = "0" * 64
ACTION_RE = r"^[A-Za-z0-9_.:-]{1,128}$"


class _PartySerializer(serializers.Serializer):
    id = serializers.CharField(max_length=256)
    type = serializers.CharField(max_length=64, required=False, default="user")
    name = serializers.CharField(max_length=256, required=False, allow_blank=True, default="")


class NaiveEventSerializer(serializers.Serializer):
    event_id = serializers.CharField(max_length=128, required=False)
    occurred_at = serializers.DateTimeField()
    action = serializers.RegexField(ACTION_RE)
    outcome = serializers.ChoiceField(Outcome.choices, default=Outcome.SUCCESS)
    severity = serializers.ChoiceField(Severity.choices, default=Severity.INFO)
    actor = _PartySerializer()
    target = _PartySerializer(required=False)
    source_ip = serializers.IPAddressField(required=False, allow_null=True)
    user_agent = serializers.CharField(max_length=512, required=False, allow_blank=True)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    metadata = serializers.JSONField(required=False, default=dict)

    def validate_occurred_at(self, value):
        if value > timezone.now() + timedelta(minutes=5):
            raise serializers.ValidationError("occurred_at is more than 5 minutes in the future.")
        return value


class NaiveIngestView(APIView):
    permission_classes = [IsAuthenticated, CanIngest]

    def post(self, request):
        serializer = NaiveEventSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        target = data.get("target") or {}
        try:
            event = self._insert(request, data, target)
        except IntegrityError:
            return Response(
                {"error": {"code": "conflict", "message": "This event_id was already stored."}},
                status=status.HTTP_409_CONFLICT,
            )
        return Response({"id": str(event.id)}, status=status.HTTP_201_CREATED)

    @staticmethod
    def _insert(request, data: dict, target: dict) -> AuditEvent:
        return AuditEvent.objects.create(
            tenant_id=get_principal(request).tenant_id,
            event_id=data.get("event_id") or str(uuid.uuid4()),
            occurred_at=data["occurred_at"],
            received_at=timezone.now(),
            action=data["action"],
            outcome=data["outcome"],
            severity=data["severity"],
            actor_id=data["actor"]["id"],
            actor_type=data["actor"]["type"],
            actor_name=data["actor"]["name"],
            target_id=target.get("id", ""),
            target_type=target.get("type", ""),
            target_name=target.get("name", ""),
            source_ip=data.get("source_ip"),
            user_agent=data.get("user_agent", ""),
            description=data.get("description", ""),
            metadata=data["metadata"],
            sequence=random.getrandbits(62),
            prev_hash=ZERO_HASH,
            hash=ZERO_HASH,
        )
