"""Account changes made in the admin reach the right trail through audit's receiver."""

import pytest
from django.urls import reverse

from accounts.models import Tenant, User
from accounts.services import SYSTEM_TENANT_SLUG
from audit.services import outbox, submission


@pytest.fixture
def submitted(monkeypatch):
    """(tenant_id, event) pairs handed to the ingest pipeline by record_system_event."""
    calls = []

    def capture(*, tenant_id, events, request_id, submitted_by=""):
        calls.extend((tenant_id, event) for event in events)
        return "broker"

    monkeypatch.setattr(submission, "events_submit", capture)
    # Account changes are written to the outbox in their own transaction.
    monkeypatch.setattr(
        outbox,
        "outbox_message_in_transaction",
        lambda *, payload: calls.extend((payload["tenant_id"], e) for e in payload["events"]),
    )
    return calls


def test_audit_records_in_the_system_tenant_that_accounts_reserves():
    assert submission.SYSTEM_TENANT_SLUG == SYSTEM_TENANT_SLUG


def test_a_tenant_added_in_the_admin_is_recorded_in_its_own_trail(
    client, superuser, submitted, django_capture_on_commit_callbacks
):
    client.force_login(superuser)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:accounts_tenant_add"), {"slug": "initech", "name": "Initech"}
        )

    assert response.status_code == 302
    tenant = Tenant.objects.get(slug="initech")
    [(tenant_id, event)] = submitted
    assert tenant_id == tenant.pk
    assert (event["action"], event["actor_id"]) == ("tenant.create", str(superuser.pk))


def test_a_tenantless_superuser_deleted_in_the_admin_is_recorded_in_the_system_trail(
    client, superuser, submitted, django_capture_on_commit_callbacks
):
    other_root = User.objects.create_superuser(username="root2", password="x-Y-z-12345")
    client.force_login(superuser)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:accounts_user_delete", args=[other_root.pk]), {"post": "yes"}
        )

    assert response.status_code == 302
    system = Tenant.objects.get(slug=SYSTEM_TENANT_SLUG)
    assert system.name == "System"
    deleted = [(t, e) for t, e in submitted if e["action"] == "user.delete"]
    assert [(t, e["target_name"]) for t, e in deleted] == [(system.pk, "root2")]
