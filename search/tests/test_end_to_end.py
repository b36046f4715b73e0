"""HTTP ingest → RabbitMQ → a real worker (ingest, then search.index) → search API, with
Elasticsearch configured but on a closed port in the worker and in the web process."""

import pytest
from django.db.models import Max

from audit.models import AuditEvent
from audit.publisher import publisher_reset
from audit.tests.ingest_api_support import post_json, purge_ingest_queue, valid_event
from audit.tests.ingest_support import wait_until
from search.models import IndexProgress
from search.tests.conftest import found
from testsupport.worker import WorkerProcess


@pytest.fixture
def worker_without_elasticsearch(transactional_db, es_refused):
    publisher_reset()
    purge_ingest_queue()
    worker = WorkerProcess(extra_env={"ELASTICSEARCH_URL": es_refused}).start()
    yield worker
    worker.stop()
    publisher_reset()
    purge_ingest_queue()


@pytest.mark.integration
def test_events_posted_while_elasticsearch_is_down_are_stored_and_searchable(
    worker_without_elasticsearch, tenant, key_client, search_get
):
    response = post_json(
        key_client(scopes=["ingest"]),
        [
            valid_event(event_id="e2e-1", description="exported the payroll report"),
            valid_event(event_id="e2e-2", description="viewed the payroll report"),
            valid_event(event_id="e2e-3", description="rotated the signing key"),
        ],
    )
    assert response.status_code == 202

    def searchable():
        return sorted(found(search_get("payroll report"))) == ["e2e-1", "e2e-2"]

    wait_until(searchable, timeout=25, what="indexed into PostgreSQL")
    reply = search_get("payroll report").json()
    assert (reply["backend"], reply["degraded"]) == ("postgresql", True)
    # Every stored event of the tenant (the API key's creation is recorded in its trail too).
    head = AuditEvent.objects.filter(tenant=tenant).aggregate(m=Max("sequence"))["m"]
    assert head >= 3
    wait_until(
        lambda: (
            IndexProgress.objects.get(tenant=tenant, backend="postgresql").last_sequence >= head
        ),
        timeout=10,
        what="PostgreSQL mark at the head",
    )
    progress = dict(
        IndexProgress.objects.filter(tenant=tenant).values_list("backend", "last_sequence")
    )
    assert progress.get("elasticsearch", 0) == 0  # left to retries, the sweep or reindex
