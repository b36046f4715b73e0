"""Ingest end to end: HTTP → RabbitMQ → a real Celery worker → PostgreSQL."""

import pytest

from accounts.models import ApiKey, Tenant
from accounts.services import SYSTEM_TENANT_SLUG, superuser_create
from audit.models import AuditEvent
from audit.publisher import publisher_reset
from audit.services.submission import record_system_event
from audit.tests.ingest_api_support import (
    ingest_messages,
    post_json,
    purge_ingest_queue,
    valid_event,
)
from audit.tests.ingest_support import wait_until
from audit.validation import event_uuid


@pytest.fixture(autouse=True)
def clean_broker():
    publisher_reset()
    purge_ingest_queue()
    yield
    publisher_reset()
    purge_ingest_queue()


@pytest.mark.integration
def test_posted_events_are_stored_with_every_field_under_the_returned_ids(
    celery_worker_process, tenant, key_client
):
    client = key_client(scopes=["ingest"])
    single = valid_event(
        event_id="one",
        occurred_at="2026-11-29T11:00:00.1234567+01:00",
        outcome="failure",
        severity="warning",
        actor={"id": "u-1", "type": "service", "name": "Billing"},
        target={"id": "inv-7", "type": "invoice", "name": "Invoice 7"},
        source_ip="::ffff:192.0.2.1",
        user_agent="curl/8.5",
        description="Changed the total",
        metadata={"before": 10, "after": 12.5, "tags": ["a"], "nested": {"ok": True}},
    )
    first = post_json(client, single)
    batch = post_json(client, [valid_event(event_id=f"b-{i}") for i in range(50)])
    assert first.status_code == batch.status_code == 202
    ids = first.json()["ids"] + batch.json()["ids"]

    wait_until(
        lambda: AuditEvent.objects.filter(pk__in=ids).count() == 51, timeout=30, what="stored"
    )
    stored = AuditEvent.objects.get(pk=first.json()["ids"][0])
    assert stored.tenant_id == tenant.pk and stored.event_id == "one"
    assert stored.occurred_at.isoformat() == "2026-11-29T10:00:00.123456+00:00"
    assert (stored.outcome, stored.severity) == ("failure", "warning")
    assert (stored.actor_id, stored.actor_type, stored.actor_name) == ("u-1", "service", "Billing")
    assert (stored.target_id, stored.target_type, stored.target_name) == (
        "inv-7",
        "invoice",
        "Invoice 7",
    )
    assert stored.source_ip == "::ffff:192.0.2.1"
    assert (stored.user_agent, stored.description) == ("curl/8.5", "Changed the total")
    assert stored.metadata == {"before": 10, "after": 12.5, "tags": ["a"], "nested": {"ok": True}}
    assert stored.received_at >= stored.occurred_at
    # Who handed it over, set by the server from the credential (the actor is the client's).
    key = ApiKey.objects.get(tenant=tenant, name="test-ingest")
    assert stored.submitted_by == f"api_key:{key.prefix}"
    batch_ids = AuditEvent.objects.filter(tenant=tenant, event_id__startswith="b-")
    assert sorted(str(pk) for pk in batch_ids.values_list("pk", flat=True)) == sorted(
        batch.json()["ids"]
    )


@pytest.mark.integration
def test_a_retry_is_answered_with_the_ids_of_the_events_stored_by_the_first_try(
    celery_worker_process, tenant, key_client
):
    client = key_client(scopes=["ingest", "read"])
    body = [valid_event(event_id="retry-1"), valid_event(event_id="retry-2")]
    # (The key's own api_key.create event lands in the same trail.)
    retried = AuditEvent.objects.filter(tenant=tenant, event_id__startswith="retry-")
    first = post_json(client, body)
    wait_until(lambda: retried.count() == 2, timeout=30, what="stored")

    retry = post_json(client, [body[1], body[0], valid_event(event_id="retry-3")])
    wait_until(lambda: retried.count() == 3, timeout=30, what="stored")

    assert retry.status_code == 202
    assert retry.json()["ids"][:2] == first.json()["ids"][::-1]
    for pk in retry.json()["ids"]:
        assert client.get(f"/api/v1/audit-events/{pk}").status_code == 200


@pytest.mark.integration
def test_an_event_sent_with_a_server_assigned_event_id_is_answered_with_the_stored_id(
    celery_worker_process, tenant, key_client
):
    """QA: the id of an event posted without event_id was its random event_id X, so an event
    later posted with event_id X got another id (derived), was dropped as a duplicate, and
    its 202 named an id that never resolved."""
    client = key_client(scopes=["ingest", "read"])
    first = post_json(client, valid_event(action="first.copy"))
    (first_id,) = first.json()["ids"]
    stored = AuditEvent.objects.filter(tenant=tenant, action="first.copy")
    wait_until(stored.exists, timeout=30, what="stored")
    event_id = client.get(f"/api/v1/audit-events/{first_id}").json()["event_id"]

    # One request, one message, one transaction: once the marker is stored, the worker has
    # handled (dropped) the second copy too.
    again = post_json(
        client,
        [valid_event(event_id=event_id, action="second.copy"), valid_event(event_id="marker")],
    )
    marker = AuditEvent.objects.filter(tenant=tenant, event_id="marker")
    wait_until(marker.exists, timeout=30, what="the marker stored")

    assert again.status_code == 202
    assert again.json()["ids"][0] == first_id
    assert not AuditEvent.objects.filter(tenant=tenant, action="second.copy").exists()
    assert client.get(f"/api/v1/audit-events/{first_id}").status_code == 200
    assert AuditEvent.objects.filter(tenant=tenant, event_id=event_id).count() == 1


@pytest.mark.django_db
def test_record_system_event_publishes_a_valid_event_for_the_system_tenant():
    event_id = record_system_event(
        tenant_id=None,
        action="dead_letter.replayed",
        actor_id="7",
        actor_name="root",
        target_id="42",
        target_type="dead_letter",
        metadata={"count": 1},
    )
    system = Tenant.objects.get(slug="system")
    (message,) = ingest_messages(expect=1)
    assert message["kwargs"]["tenant_id"] == system.pk
    (event,) = message["kwargs"]["events"]
    assert event["id"] == event_id
    # As for the API: the id derives from (tenant, event_id), so a client event sent later
    # with this event_id is answered with this event's id.
    assert event_id == event_uuid(system.pk, event["event_id"])
    assert (event["action"], event["actor_id"], event["actor_type"]) == (
        "dead_letter.replayed",
        "7",
        "user",
    )
    assert (event["target_id"], event["target_type"]) == ("42", "dead_letter")
    assert event["metadata"] == {"count": 1}
    assert message["kwargs"]["submitted_by"] == "traceledger"


@pytest.mark.django_db(transaction=True)  # autocommit, as make run's bootstrap_demo
def test_the_system_tenants_creation_is_recorded_before_what_first_needed_it(submitted_events):
    """The first record of the system trail creates the system tenant: its ``tenant.create``
    used to carry a later time than the record that needed it (whose time was taken first)."""
    submitted = submitted_events
    Tenant.objects.filter(slug=SYSTEM_TENANT_SLUG).delete()

    superuser_create(username="first-root", password="violet-Anchor-47-river")

    assert [event["action"] for event in submitted] == ["tenant.create", "user.create"]
    created, user = submitted
    assert created["occurred_at"] <= user["occurred_at"]


@pytest.mark.django_db
def test_record_system_event_refuses_an_invalid_event_with_the_field_named(tenant):
    with pytest.raises(ValueError, match="action"):
        record_system_event(tenant_id=tenant.pk, action="not valid!", actor_id="1")


@pytest.mark.django_db
def test_record_system_event_falls_back_to_the_outbox_when_the_broker_is_down(
    tenant, fault_proxy, settings
):
    from audit.models import OutboxMessage
    from audit.tests.ingest_api_support import broker_port, broker_url_via

    proxy = fault_proxy("127.0.0.1", broker_port())
    settings.CELERY_BROKER_URL = broker_url_via(proxy.port)
    proxy.set_mode("refuse")
    event_id = record_system_event(tenant_id=tenant.pk, action="api_key.created", actor_id="1")
    (row,) = OutboxMessage.objects.all()
    assert row.payload["events"][0]["id"] == event_id
    assert event_id == event_uuid(tenant.pk, row.payload["events"][0]["event_id"])


@pytest.mark.integration
def test_a_person_posting_with_a_token_is_recorded_as_the_submitter(
    celery_worker_process, tenant, owner, user_client
):
    response = post_json(user_client(owner), valid_event(event_id="by-a-person"))
    assert response.status_code == 202

    stored = wait_until(
        lambda: AuditEvent.objects.filter(pk=response.json()["ids"][0]).first(),
        timeout=30,
        what="stored",
    )
    assert stored.submitted_by == f"user:{owner.pk}"
