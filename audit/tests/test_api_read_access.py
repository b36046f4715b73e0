"""Audit the auditors: a person's reads and every export leave audit_log.* events."""

import time

import pytest
from django.core.cache import cache

from accounts.models import Tenant
from audit.metrics_read import READ_REQUESTS
from audit.models import AuditEvent
from audit.tests.factories import events_create

LIST = "/api/v1/audit-events"
EXPORT = "/api/v1/audit-events/export"


@pytest.fixture
def recorded(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "audit.services.submission.record_system_event", lambda **kw: calls.append(kw)
    )
    return calls


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()


@pytest.mark.django_db
def test_it_records_a_persons_list_read_with_the_filters_used(
    user_client, teammate, tenant, recorded
):
    events_create(tenant_id=tenant.pk, count=2)
    response = user_client(teammate).get(LIST, {"actor_id": "alice", "action": "invoice.*"})
    assert response.status_code == 200
    [record] = recorded
    assert record["tenant_id"] == tenant.pk
    assert record["action"] == "audit_log.read"
    assert record["actor_id"] == str(teammate.pk)
    assert record["actor_type"] == "user"
    assert record["actor_name"] == "teammate"
    assert record["metadata"] == {
        "filters": {"action": "invoice.*", "actor_id": "alice"},
        "endpoint": "list",
    }


@pytest.mark.django_db
def test_it_records_a_persons_detail_read_with_the_event_as_target(
    user_client, teammate, tenant, recorded
):
    [event] = events_create(tenant_id=tenant.pk, count=1)
    client = user_client(teammate)
    assert client.get(f"{LIST}/{event.pk}").status_code == 200
    assert client.get(f"{LIST}/{event.pk}").status_code == 200  # from the cache: still recorded
    assert [r["target_id"] for r in recorded] == [str(event.pk)] * 2
    assert {r["target_type"] for r in recorded} == {"audit_event"}


@pytest.mark.django_db
def test_it_records_a_superusers_detail_read_in_the_events_tenant(
    user_client, superuser, other_tenant, recorded
):
    [event] = events_create(tenant_id=other_tenant.pk, count=1)
    assert user_client(superuser).get(f"{LIST}/{event.pk}").status_code == 200
    [record] = recorded
    assert record["tenant_id"] == other_tenant.pk
    assert record["metadata"]["superuser"] is True


@pytest.mark.django_db
def test_it_records_a_superusers_list_that_finds_nothing_in_the_tenant_named(
    user_client, superuser, tenant, other_tenant, recorded
):
    events_create(tenant_id=tenant.pk, count=1)
    response = user_client(superuser).get(LIST, {"tenant": other_tenant.slug})
    assert response.status_code == 200
    assert response.json()["results"] == []
    assert [(r["action"], r["tenant_id"]) for r in recorded] == [
        ("audit_log.read", other_tenant.pk)
    ]


@pytest.mark.django_db
def test_a_superusers_list_without_a_tenant_reads_every_tenant_and_records_each_shown(
    user_client, superuser, tenant, other_tenant, recorded
):
    ours = events_create(tenant_id=tenant.pk, count=2)
    theirs = events_create(tenant_id=other_tenant.pk, count=2)
    third = Tenant.objects.create(slug="third", name="Third")
    client = user_client(superuser)

    counted = READ_REQUESTS.labels(endpoint="list", principal_kind="user")
    before = counted._value.get()
    response = client.get(LIST)
    assert response.status_code == 200
    assert {row["id"] for row in response.json()["results"]} == {
        str(e.pk) for e in [*ours, *theirs]
    }
    # The query in the system tenant's trail (None), the read in each tenant's shown.
    assert [r["tenant_id"] for r in recorded] == [None, *sorted([tenant.pk, other_tenant.pk])]
    assert counted._value.get() == before + 1  # one request, however many trails
    assert third.pk not in [r["tenant_id"] for r in recorded]

    # One page of two: only the tenants whose events that page showed record it.
    recorded.clear()
    first_page = client.get(LIST, {"page_size": 1}).json()["results"]
    shown = AuditEvent.objects.get(pk=first_page[0]["id"]).tenant_id
    assert [r["tenant_id"] for r in recorded] == [None, shown]

    recorded.clear()
    assert client.get(LIST, {"action": "nothing.here"}).json()["results"] == []
    assert [r["tenant_id"] for r in recorded] == [None]  # the system tenant's trail


@pytest.mark.django_db
def test_a_superusers_query_of_every_tenant_is_kept_out_of_each_tenants_trail(
    user_client, superuser, tenant, other_tenant, recorded
):
    """Its text may name another tenant's people: tenancy QA saw "invoice OR GLOBEXSECRET"
    in acme's trail, readable by acme's auditors."""
    events_create(tenant_id=tenant.pk, count=1, actor_id="ada")
    events_create(tenant_id=other_tenant.pk, count=1, actor_id="hank-at-globex")
    response = user_client(superuser).get(LIST, {"actor_type": "user"})
    assert response.status_code == 200
    system, *per_tenant = recorded
    assert system["tenant_id"] is None
    assert system["metadata"]["filters"] == {"actor_type": "user"}
    assert system["metadata"]["tenants_shown"] == sorted([tenant.pk, other_tenant.pk])
    assert [r["tenant_id"] for r in per_tenant] == sorted([tenant.pk, other_tenant.pk])
    for record in per_tenant:
        assert "filters" not in record["metadata"]
        assert record["metadata"]["every_tenant"] is True
        assert "system tenant's trail" in record["description"]


@pytest.mark.django_db
def test_an_access_record_of_no_tenant_goes_to_the_system_tenants_trail(superuser, monkeypatch):
    from accounts.principal import principal_for_user
    from audit.services.access_log import SEARCH, access_record
    from audit.services.submission import system_tenant_id

    submitted = []
    monkeypatch.setattr(
        "audit.services.submission.events_submit", lambda **kw: submitted.append(kw)
    )

    access_record(
        principal=principal_for_user(superuser), action=SEARCH, tenant_id=None, endpoint="x"
    )

    [submission] = submitted
    assert submission["tenant_id"] == system_tenant_id()
    assert submission["events"][0]["action"] == "audit_log.search"


@pytest.mark.django_db
def test_it_counts_but_does_not_record_a_service_keys_reads(key_client, tenant, recorded, client):
    [event] = events_create(tenant_id=tenant.pk, count=1)

    def reads():
        text = client.get("/metrics").content.decode()
        prefix = 'traceledger_read_requests_total{endpoint="list",principal_kind="api_key"}'
        return next((float(x.split()[-1]) for x in text.splitlines() if x.startswith(prefix)), 0)

    before = reads()
    reader = key_client(scopes=("read",))
    assert reader.get(LIST).status_code == 200
    assert reader.get(f"{LIST}/{event.pk}").status_code == 200
    assert recorded == []
    assert reads() == before + 1


@pytest.mark.django_db
def test_it_records_nothing_for_a_refused_read(user_client, teammate, recorded):
    assert user_client(teammate).get(LIST, {"outcome": "maybe"}).status_code == 400
    assert user_client(teammate).get(LIST, {"tenant": "globex"}).status_code == 403
    assert recorded == []


def _wait_for(queryset, *, count: int, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(queryset.all())  # a fresh query each time, not the cached result
        if len(found) >= count:
            return found
        time.sleep(0.2)
    return found


@pytest.mark.integration
def test_a_persons_export_and_read_are_stored_as_events_of_the_tenant(
    celery_worker_process, user_client, teammate, tenant
):
    events_create(tenant_id=tenant.pk, count=3, action="invoice.paid")
    client = user_client(teammate)
    export = client.get(EXPORT, {"format": "csv", "action": "invoice.*", "severity": "info"})
    assert export.status_code == 200
    b"".join(export.streaming_content)
    assert client.get(LIST, {"actor_type": "user"}).status_code == 200

    stored = _wait_for(
        AuditEvent.objects.filter(tenant=tenant, action__startswith="audit_log.").order_by(
            "action"
        ),
        count=2,
    )
    assert [e.action for e in stored] == ["audit_log.export", "audit_log.read"], (
        celery_worker_process.log()[-3000:]
    )
    export_event, read_event = stored
    assert export_event.actor_id == str(teammate.pk)
    assert export_event.actor_name == "teammate"
    assert export_event.metadata["filters"] == {
        "action": "invoice.*",
        "format": "csv",
        "severity": "info",
    }
    assert read_event.metadata["filters"] == {"actor_type": "user"}
