"""The real ingest worker chains events so that the ledger verifies them, online and offline."""

import json

import pytest

from audit.ledger.verify import ledger_verify
from audit.models import AuditEvent
from audit.tests.ingest_support import make_event, publish, purge_queues, wait_until
from audit.tests.test_ledger_offline_tool import _api_document, _run
from testsupport.worker import WorkerProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def two_workers(transactional_db):
    purge_queues()
    worker = WorkerProcess(queues="audit.ingest", concurrency=2).start()
    yield worker
    worker.stop()
    purge_queues()


def test_batches_ingested_by_concurrent_worker_processes_form_one_verifiable_chain(
    tenant, two_workers, tmp_path
):
    variants = [
        {"source_ip": "2001:DB8::1", "metadata": {"price": 12.5, "z": [1, 0.1, None]}},
        {"source_ip": "::ffff:192.0.2.7", "metadata": {"é": "ü😀", "n": 10**15}},
        {"source_ip": None, "target_id": "", "target_type": "", "target_name": ""},
    ]
    batches = [[make_event(**variants[(b + i) % 3]) for i in range(10)] for b in range(8)]
    for batch in batches:
        publish(tenant_id=tenant.pk, events=batch)
    wait_until(
        lambda: AuditEvent.objects.filter(tenant=tenant).count() == 80,
        timeout=60,
        what="80 stored events",
    )

    result = ledger_verify(tenant_id=tenant.pk)
    assert (result.ok, result.checked, result.first_bad_sequence) == (True, 80, None)
    sequences = sorted(AuditEvent.objects.filter(tenant=tenant).values_list("sequence", flat=True))
    assert sequences == list(range(1, 81))

    export = tmp_path / "events.jsonl"
    events = AuditEvent.objects.filter(tenant=tenant).select_related("tenant")
    export.write_text("".join(json.dumps(_api_document(e)) + "\n" for e in events))
    offline = _run(export)
    assert offline.returncode == 0, offline.stdout + offline.stderr
