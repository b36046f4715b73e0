"""Account changes (users, roles, keys) are recorded as audit events of their tenant."""

import pytest
from django.db.models import Q
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.services import actor_for_user, api_key_create, api_key_revoke
from audit.models import AuditEvent
from audit.tests.ingest_support import purge_queues, wait_until

PASSWORD = "violet-Anchor-47-river"


@pytest.mark.integration
def test_it_records_user_and_key_changes_in_the_tenants_trail(
    owner, other_tenant, celery_worker_process
):
    purge_queues()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(owner).access_token}")
    created = client.post(
        "/api/v1/users",
        {"username": "grace", "password": PASSWORD, "role": "auditor"},
        format="json",
    )
    assert created.status_code == 201
    api_key, key = api_key_create(
        tenant=owner.tenant, name="billing", scopes=["ingest"], actor=actor_for_user(owner)
    )
    api_key_revoke(api_key=api_key, actor=actor_for_user(owner))

    events = wait_until(
        lambda: (
            found
            if len(
                found := list(AuditEvent.objects.filter(tenant=owner.tenant).order_by("sequence"))
            )
            >= 3
            else None
        ),
        timeout=25,
        what="three account events",
    )
    assert [e.action for e in events] == ["user.create", "api_key.create", "api_key.revoke"], (
        celery_worker_process.log()[-3000:]
    )
    user_event, key_event, revoke_event = events
    assert (user_event.actor_id, user_event.actor_type, user_event.actor_name) == (
        str(owner.pk),
        "user",
        "owner",
    )
    assert (user_event.target_type, user_event.target_name) == ("user", "grace")
    assert user_event.metadata == {"role": "auditor", "is_staff": False}
    assert (key_event.target_type, key_event.target_id) == ("api_key", api_key.prefix)
    assert key_event.metadata["scopes"] == ["ingest"]
    assert revoke_event.metadata["revoked"] is True
    secret = key.partition(".")[2]
    leaks = AuditEvent.objects.filter(
        Q(description__contains=secret)
        | Q(metadata__icontains=secret)
        | Q(description__contains=PASSWORD)
        | Q(metadata__icontains=PASSWORD)
        | Q(target_id__contains=api_key.hashed_key[8:40])
    )
    assert not leaks.exists()
    assert not AuditEvent.objects.filter(tenant=other_tenant).exists()
