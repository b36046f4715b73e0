"""Against a live Elasticsearch 8/9: run with ELASTICSEARCH_URL set (skipped otherwise).

Use a disposable cluster: the tests rebuild the ``traceledger-audit-events`` alias. These
were NOT run while this code was written (no Elasticsearch server on that machine).
"""

import os

import pytest
from django.core.management import call_command

from search.documents import INDEX_ALIAS
from search.tests.conftest import found

pytestmark = [
    pytest.mark.elasticsearch,
    pytest.mark.django_db,
    pytest.mark.skipif(
        not os.environ.get("ELASTICSEARCH_URL"), reason="needs a live ELASTICSEARCH_URL"
    ),
]


@pytest.fixture
def live(tenant, other_tenant):
    from audit.tests.factories import events_create
    from search.backends.elasticsearch import es_client

    def make(specs: dict[str, dict], tenant_id=None):
        for event_id, fields in specs.items():
            events_create(tenant_id=tenant_id or tenant.pk, event_id=event_id, **fields)
        call_command("reindex_search", "--backend", "elasticsearch", "--restart")
        es_client().indices.refresh(index=INDEX_ALIAS)

    return make


def test_it_answers_from_elasticsearch_with_the_websearch_syntax(live, search_get):
    live(
        {
            "phrase": {"description": "Alice exported the payroll report"},
            "apart": {"description": "the report on payroll was exported by Mallory"},
            "pension": {"description": "pension exported", "severity": "critical"},
        }
    )
    response = search_get("payroll")
    assert response.json()["backend"] == "elasticsearch"
    assert sorted(found(response)) == ["apart", "phrase"]
    assert found(search_get('"payroll report"')) == ["phrase"]
    assert sorted(found(search_get("payroll OR pension"))) == ["apart", "pension", "phrase"]
    assert found(search_get("payroll -mallory")) == ["phrase"]
    assert found(search_get("exported", severity="critical")) == ["pension"]


def test_it_keeps_tenants_apart_on_elasticsearch(live, search_get, other_tenant):
    live({"mine": {"description": "payroll"}})
    live({"theirs": {"description": "payroll"}}, tenant_id=other_tenant.pk)
    assert found(search_get("payroll")) == ["mine"]
