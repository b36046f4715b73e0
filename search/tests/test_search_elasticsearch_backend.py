"""The Elasticsearch backend over HTTP against a recording stand-in (not a live cluster):
what it sends, and how it turns hits into the API's answer through PostgreSQL."""

import uuid

import pytest

from audit.tests.factories import events_create
from search.documents import INDEX_ALIAS
from search.tests.conftest import found

pytestmark = pytest.mark.django_db


def _hit(event, score: float) -> dict:
    millis = int(event.occurred_at.timestamp() * 1000)
    return {"_id": str(event.id), "_score": score, "sort": [score, millis, str(event.id)]}


def test_it_answers_in_elasticsearchs_order_read_back_from_postgresql(
    fake_es, tenant, other_tenant, search_get
):
    first, second = events_create(tenant_id=tenant.pk, count=2)
    foreign = events_create(tenant_id=other_tenant.pk)[0]
    fake_es.search_hits = [
        _hit(second, 3.0),
        _hit(foreign, 2.0),  # a stale or foreign hit must never be shown
        _hit(first, 1.0),
        {"_id": str(uuid.uuid4()), "_score": 0.5, "sort": [0.5, 0, "x"]},  # not in PostgreSQL
    ]
    response = search_get("payroll", severity="info")
    assert response.json()["backend"] == "elasticsearch"
    assert response.json()["degraded"] is False
    assert found(response) == [second.event_id, first.event_id]
    body = fake_es.search_bodies[0]
    assert {"term": {"tenant": tenant.pk}} in body["query"]["bool"]["filter"]
    assert {"term": {"severity": "info"}} in body["query"]["bool"]["filter"]
    assert ("POST", f"/{INDEX_ALIAS}/_search") in fake_es.requests


def test_it_pages_with_search_after_from_the_last_hit(fake_es, tenant, search_get, key_client):
    events = events_create(tenant_id=tenant.pk, count=3)
    fake_es.search_hits = [_hit(e, 1.0) for e in reversed(events)]
    response = search_get("payroll", page_size=2)
    assert found(response) == [events[2].event_id, events[1].event_id]
    next_url = response.json()["next"]
    assert next_url

    fake_es.search_hits = [_hit(events[0], 1.0)]
    response = key_client(scopes=["read"]).get(next_url)
    assert found(response) == [events[0].event_id]
    assert response.json()["next"] is None
    assert fake_es.search_bodies[1]["search_after"] == _hit(events[1], 1.0)["sort"]
