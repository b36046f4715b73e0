"""GET /api/v1/audit-events/search: the endpoint minimum (401, 403, 400, happy path)."""

import pytest

from audit.api.serializers import event_document
from audit.models import AuditEvent
from search.api.views import cursor_encode
from search.tests.conftest import found

pytestmark = pytest.mark.django_db


def test_it_answers_401_without_credentials(api_client):
    response = api_client.get("/api/v1/audit-events/search", {"q": "payroll"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_it_answers_403_to_a_key_without_the_read_scope(search_get, key_client):
    response = search_get("payroll", client=key_client(scopes=["ingest"]))
    assert response.status_code == 403


def test_it_answers_403_when_asked_for_another_tenant(search_get, other_tenant):
    response = search_get("payroll", tenant=other_tenant.slug)
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "x" * 513}, "q"),
        ({"q": "pay\x00roll"}, "q"),
        ({"q": "payroll", "actor_id": "a\x00b"}, "actor_id"),
        (
            {
                "q": "payroll",
                "cursor": cursor_encode({"b": "postgresql", "s": 1, "t": "x", "i": "y"}),
            },
            "cursor",
        ),
        ({"q": "payroll", "severity": "loud"}, "severity"),
        ({"q": "payroll", "occurred_after": "yesterday"}, "occurred_after"),
        ({"q": "payroll", "action": "*"}, "action"),
        ({"q": "payroll", "page_size": "0"}, "page_size"),
        ({"q": "payroll", "page_size": "501"}, "page_size"),
        ({"q": "payroll", "cursor": "not-base64!"}, "cursor"),
        ({"q": "payroll", "cursor": cursor_encode({"b": "postgresql", "s": "x"})}, "cursor"),
        ({"q": "payroll", "sort": "oldest"}, "sort"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_it_answers_400_naming_the_bad_parameter(search_get, params, field):
    response = search_get(**params)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]


def test_it_refuses_a_cursor_of_the_other_backend(search_get, indexed):
    indexed(description="payroll")
    cursor = cursor_encode(
        {"b": "elasticsearch", "s": 1.0, "t": "2026-01-01T00:00:00+00:00", "i": "x"}
    )
    response = search_get("payroll", cursor=cursor)
    assert response.status_code == 400
    assert "cursor" in response.json()["error"]["fields"]


def test_it_answers_in_the_documented_shape(search_get, indexed):
    event = indexed(event_id="e-1", description="payroll exported")[0]
    response = search_get("payroll")
    body = response.json()
    assert body["backend"] == "postgresql"
    assert body["degraded"] is False
    assert body["next"] is None
    stored = AuditEvent.objects.select_related("tenant").get(pk=event.pk)
    assert body["results"] == [event_document(stored)]


def test_it_lets_a_superuser_search_a_named_tenant(user_client, superuser, tenant, indexed):
    indexed(event_id="e-1", description="payroll exported")
    client = user_client(superuser)
    response = client.get("/api/v1/audit-events/search", {"q": "payroll", "tenant": tenant.slug})
    assert found(response) == ["e-1"]
    missing = client.get("/api/v1/audit-events/search", {"q": "payroll"})
    assert missing.status_code == 400
    assert "tenant" in missing.json()["error"]["fields"]


def test_it_records_a_persons_search_as_an_audit_log_search_event(
    user_client, teammate, tenant, indexed, monkeypatch
):
    recorded = []
    monkeypatch.setattr(
        "audit.services.submission.record_system_event", lambda **kw: recorded.append(kw)
    )
    indexed(description="payroll exported")
    response = user_client(teammate).get(
        "/api/v1/audit-events/search", {"q": "payroll", "severity": "info"}
    )
    assert response.status_code == 200
    assert len(recorded) == 1
    assert recorded[0]["action"] == "audit_log.search"
    assert recorded[0]["tenant_id"] == tenant.pk
    assert recorded[0]["metadata"]["filters"] == {"q": "payroll", "severity": "info"}


def test_it_does_not_record_a_service_keys_search(search_get, indexed, monkeypatch):
    recorded = []
    monkeypatch.setattr(
        "audit.services.submission.record_system_event", lambda **kw: recorded.append(kw)
    )
    indexed(description="payroll exported")
    assert search_get("payroll").status_code == 200
    assert recorded == []
