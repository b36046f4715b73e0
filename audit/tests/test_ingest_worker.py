"""The ingest pipeline end to end: RabbitMQ (this vhost) → a real Celery worker → PostgreSQL."""

import os
import signal
import threading
import uuid
from pathlib import Path

import pytest
from django.db import connection

from audit.models import AuditEvent
from audit.services.ingest import events_ingest
from audit.tests.ingest_support import (
    make_event,
    publish,
    purge_queues,
    queue_depth,
    settled_line,
    wait_until,
    waiting_on_lock,
)
from audit.tests.test_ingest_service import chain_verifies
from testsupport.worker import WorkerProcess
from traceledger.queues import DLQ, INGEST_QUEUE

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def clean_queues():
    purge_queues()
    yield
    purge_queues()


def retries_counted(worker: WorkerProcess) -> int:
    """Retries the worker counted (``traceledger_ingest_retries_total``, any error): its log
    says only the first of every 30 s."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=worker.env["PROMETHEUS_MULTIPROC_DIR"])
    return int(
        sum(
            sample.value
            for metric in registry.collect()
            if metric.name == "traceledger_ingest_retries"
            for sample in metric.samples
            if sample.name.endswith("_total")
        )
    )


def stored_count(tenant_id: int) -> int:
    return AuditEvent.objects.filter(tenant_id=tenant_id).count()


def wait_stored(tenant_id: int, n: int, timeout: float = 20) -> None:
    wait_until(lambda: stored_count(tenant_id) >= n, timeout=timeout, what=f"{n} stored events")


def test_it_stores_a_single_event_and_a_batch_with_every_field_intact(
    tenant, celery_worker_process
):
    single = make_event(source_ip=None, target_id="", target_type="", target_name="")
    batch = [make_event(metadata={"i": i}) for i in range(100)]

    publish(tenant_id=tenant.pk, events=[single])
    publish(tenant_id=tenant.pk, events=batch)
    wait_stored(tenant.pk, 101)

    stored = {str(e.pk): e for e in AuditEvent.objects.filter(tenant=tenant)}
    assert set(stored) == {single["id"], *(e["id"] for e in batch)}
    for sent in [single, *batch]:
        row = stored[sent["id"]]
        for name in ("event_id", "action", "actor_id", "actor_name", "target_id", "metadata"):
            assert getattr(row, name) == sent[name]
        assert row.source_ip == sent["source_ip"]
        assert row.occurred_at.isoformat() == sent["occurred_at"]
        assert row.received_at.isoformat() == sent["received_at"]
    assert chain_verifies(tenant.pk)


def test_posted_events_are_stored_under_the_ids_the_api_returned(
    tenant, key_client, celery_worker_process
):
    client = key_client(scopes=["ingest"])
    single = {
        "event_id": "inv-7-update-1",
        "occurred_at": "2026-11-29T10:00:00.123456+01:00",
        "action": "invoice.update",
        "outcome": "failure",
        "severity": "warning",
        "actor": {"id": "user-42", "type": "user", "name": "Ada"},
        "target": {"id": "inv-7", "type": "invoice", "name": "Invoice 7"},
        "source_ip": "2001:db8::7",
        "user_agent": "curl/8",
        "description": "Ada changed the total",
        "metadata": {"before": 10, "after": 12},
    }
    batch = [
        {"occurred_at": "2026-11-29T10:00:01Z", "action": "user.login", "actor": {"id": f"u{i}"}}
        for i in range(50)
    ]

    one = client.post("/api/v1/audit-events", single, format="json")
    many = client.post("/api/v1/audit-events", batch, format="json")

    assert (one.status_code, many.status_code) == (202, 202)
    ids = set(one.json()["ids"] + many.json()["ids"])
    assert len(ids) == 51

    def stored_ids() -> set[str]:
        # The tenant's trail also holds the API key's creation, recorded by accounts.
        return {
            str(pk) for pk in AuditEvent.objects.filter(tenant=tenant).values_list("pk", flat=True)
        }

    wait_until(lambda: ids <= stored_ids(), what="the posted events")
    assert (
        AuditEvent.objects.filter(
            tenant=tenant, action__in=["invoice.update", "user.login"]
        ).count()
        == 51
    )
    stored = AuditEvent.objects.get(pk=one.json()["ids"][0])
    assert stored.event_id == "inv-7-update-1"
    assert stored.occurred_at.isoformat() == "2026-11-29T09:00:00.123456+00:00"
    assert (stored.action, stored.outcome, stored.severity) == (
        "invoice.update",
        "failure",
        "warning",
    )
    assert (stored.actor_id, stored.actor_type, stored.actor_name) == ("user-42", "user", "Ada")
    assert (stored.target_id, stored.target_type, stored.target_name) == (
        "inv-7",
        "invoice",
        "Invoice 7",
    )
    assert (stored.source_ip, stored.user_agent) == ("2001:db8::7", "curl/8")
    assert stored.description == "Ada changed the total"
    assert stored.metadata == {"before": 10, "after": 12}
    assert chain_verifies(tenant.pk)


def test_the_same_batch_twice_and_overlapping_batches_from_threads_store_each_event_once(
    tenant,
):
    worker = WorkerProcess(queues=INGEST_QUEUE.name, concurrency=2).start()
    try:
        pool = [make_event(event_id=f"evt-{i}") for i in range(300)]
        batch = pool[:50]
        publish(tenant_id=tenant.pk, events=batch)
        publish(tenant_id=tenant.pk, events=batch)

        def post_overlapping(offset: int) -> None:
            for start in range(offset, 250, 40):
                # Each thread re-sends events the others send too, as fresh API requests
                # would: same event_id, new id.
                events = [{**e, "id": str(uuid.uuid4())} for e in pool[start : start + 50]]
                publish(tenant_id=tenant.pk, events=events)

        offsets = [k * 10 for k in range(4)]
        expected = {
            e["event_id"] for k in offsets for i in range(k, 250, 40) for e in pool[i : i + 50]
        }
        threads = [threading.Thread(target=post_overlapping, args=(k,)) for k in offsets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

        wait_stored(tenant.pk, len(expected))
        wait_until(lambda: queue_depth(INGEST_QUEUE.name) == 0, what="an empty ingest queue")
    finally:
        worker.stop()

    event_ids = list(AuditEvent.objects.filter(tenant=tenant).values_list("event_id", flat=True))
    assert len(event_ids) == len(set(event_ids))
    assert set(event_ids) == expected
    assert chain_verifies(tenant.pk)


def test_a_worker_killed_mid_batch_stores_every_event_once_after_restart(tenant):
    first = WorkerProcess(queues=INGEST_QUEUE.name).start()
    try:
        publish(tenant_id=tenant.pk, events=[make_event()])
        wait_stored(tenant.pk, 1)
        batch = [make_event() for _ in range(200)]
        with connection.cursor() as cursor:
            # Hold the tenant's chain head: the worker runs the batch up to the lock inside
            # its transaction and waits there, unacked, when we kill it.
            cursor.execute("BEGIN")
            cursor.execute(
                "SELECT 1 FROM audit_chainhead WHERE tenant_id = %s FOR UPDATE", [tenant.pk]
            )
            publish(tenant_id=tenant.pk, events=batch)
            wait_until(
                lambda: waiting_on_lock(cursor), timeout=15, what="the worker to block on it"
            )
            first.kill()
            cursor.execute("ROLLBACK")
    finally:
        first.stop()

    assert stored_count(tenant.pk) == 1
    second = WorkerProcess(queues=INGEST_QUEUE.name).start()
    try:
        wait_stored(tenant.pk, 201)
        late = publish(tenant_id=tenant.pk, events=batch)  # and a late duplicate for good measure
        line = wait_until(lambda: settled_line(second.log(), late), what="the late duplicate")
    finally:
        second.stop()

    assert stored_count(tenant.pk) == 201
    assert "'duplicates': 200" in line
    assert chain_verifies(tenant.pk)


def test_a_killed_pool_process_requeues_its_batch_which_is_then_stored_once(tenant):
    worker = WorkerProcess(queues=INGEST_QUEUE.name).start()
    try:
        publish(tenant_id=tenant.pk, events=[make_event()])
        wait_stored(tenant.pk, 1)
        batch = [make_event() for _ in range(50)]
        with connection.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(
                "SELECT 1 FROM audit_chainhead WHERE tenant_id = %s FOR UPDATE", [tenant.pk]
            )
            publish(tenant_id=tenant.pk, events=batch)
            wait_until(lambda: waiting_on_lock(cursor), timeout=15, what="the worker to block")
            main = worker.proc.pid
            [child] = Path(f"/proc/{main}/task/{main}/children").read_text().split()
            os.kill(int(child), signal.SIGKILL)  # an OOM kill of the pool process, say
            cursor.execute("ROLLBACK")
        wait_stored(tenant.pk, 51)
    finally:
        worker.stop()

    assert "WorkerLostError" in worker.log()
    assert stored_count(tenant.pk) == 51
    assert chain_verifies(tenant.pk)


def test_it_retries_with_backoff_while_the_table_is_locked_and_stores_once_it_is_free(
    tenant, tmp_path
):
    events_ingest(tenant_id=tenant.pk, events=[make_event()])  # the chain head exists
    worker = WorkerProcess(
        queues=INGEST_QUEUE.name,
        extra_env={
            "TRACELEDGER_INGEST_LOCK_TIMEOUT": "0.5",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        },
    ).start()
    try:
        batch = [make_event() for _ in range(20)]
        with connection.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("LOCK TABLE audit_auditevent IN ACCESS EXCLUSIVE MODE")
            publish(tenant_id=tenant.pk, events=batch)
            wait_until(lambda: retries_counted(worker) >= 2, timeout=20, what="two retries")
            # Nothing acked before commit: the batch is still held by RabbitMQ (in the ingest
            # queue or a delayed-delivery queue), and nothing went to the DLQ.
            assert queue_depth(DLQ.name) == 0
            cursor.execute("ROLLBACK")
        wait_stored(tenant.pk, 21, timeout=30)
    finally:
        worker.stop()

    assert stored_count(tenant.pk) == 21
    assert "OperationalError" in worker.log()
    assert chain_verifies(tenant.pk)


def test_it_retries_while_the_database_is_unreachable_and_stores_once_it_is_back(
    tenant, fault_proxy, tmp_path
):
    from testsupport.worker import test_database_url

    db = connection.settings_dict
    host, port = db.get("HOST") or "localhost", int(db.get("PORT") or 5432)
    proxy = fault_proxy(host, port)
    # The worker reaches PostgreSQL only through the proxy.
    url = test_database_url().replace(f"{host}:{port}/", f"127.0.0.1:{proxy.port}/")
    assert f":{proxy.port}/" in url
    worker = WorkerProcess(
        queues=INGEST_QUEUE.name,
        extra_env={"DATABASE_URL": url, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
    ).start()
    try:
        proxy.set_mode("refuse")  # also cuts the worker's open connection
        batch = [make_event() for _ in range(10)]
        publish(tenant_id=tenant.pk, events=batch)
        wait_until(lambda: retries_counted(worker) >= 2, timeout=20, what="two retries")
        assert stored_count(tenant.pk) == 0
        assert queue_depth(DLQ.name) == 0
        proxy.set_mode("pass")
        wait_stored(tenant.pk, 10, timeout=30)
    finally:
        worker.stop()

    assert stored_count(tenant.pk) == 10


def test_a_batch_that_exhausts_its_retries_lands_in_the_dead_letter_queue(tenant, tmp_path):
    from audit.models import DeadLetter
    from audit.services.dead_letters import dead_letters_drain

    events_ingest(tenant_id=tenant.pk, events=[make_event()])
    worker = WorkerProcess(
        queues=INGEST_QUEUE.name,
        extra_env={
            "TRACELEDGER_INGEST_LOCK_TIMEOUT": "0.2",
            "TRACELEDGER_INGEST_MAX_RETRIES": "2",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        },
    ).start()
    try:
        with connection.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("LOCK TABLE audit_auditevent IN ACCESS EXCLUSIVE MODE")
            task_id = publish(tenant_id=tenant.pk, events=[make_event()])
            wait_until(lambda: queue_depth(DLQ.name) == 1, timeout=25, what="a dead letter")
            cursor.execute("ROLLBACK")
    finally:
        worker.stop()

    assert retries_counted(worker) == 2
    # One line, no traceback, for a batch whose retries ran out on an outage.
    [failed] = [line for line in worker.log().splitlines() if "raised unexpected" in line]
    assert "OperationalError" in failed and "Traceback" not in failed
    assert dead_letters_drain().moved == 1
    letter = DeadLetter.objects.get()
    assert letter.message_id == task_id
    assert letter.attempts == 3
    assert letter.original_queue == INGEST_QUEUE.name
    assert letter.reason == "failed after 2 retries: OperationalError"
    assert "lock timeout" in letter.exception
    assert letter.first_failed_at is not None
    assert stored_count(tenant.pk) == 1


def test_worker_start_up_declares_the_dead_letter_queue():
    from kombu import Connection

    from traceledger.celery import app

    with Connection(app.conf.broker_url) as conn:
        conn.default_channel.queue_delete(DLQ.name)
    worker = WorkerProcess(queues=INGEST_QUEUE.name).start()
    try:
        assert queue_depth(DLQ.name) == 0  # passive declare: raises if the queue is missing
    finally:
        worker.stop()


def test_the_worker_metrics_reach_the_multiprocess_registry(tenant, tmp_path):
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    worker = WorkerProcess(
        queues=INGEST_QUEUE.name, extra_env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    ).start()
    try:
        events = [make_event() for _ in range(7)]
        publish(tenant_id=tenant.pk, events=events)
        late = publish(tenant_id=tenant.pk, events=events[:3])
        wait_until(lambda: settled_line(worker.log(), late), what="both batches")
    finally:
        worker.stop()

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))  # what /metrics does in production
    assert registry.get_sample_value("traceledger_events_stored_total") == 7
    assert registry.get_sample_value("traceledger_events_duplicates_dropped_total") == 3
    assert registry.get_sample_value("traceledger_ingest_lag_seconds_count") == 7
    assert registry.get_sample_value("traceledger_ingest_ledger_seconds_count") == 1


def test_a_delayed_retry_comes_back_to_the_ingest_queue():
    """Regression: native delayed delivery routes by the task's queue, not the message's."""
    from audit.tasks import ingest_batch

    maintenance_before = queue_depth("maintenance")
    # What Task.retry() publishes: the original delivery_info plus a countdown.
    ingest_batch.apply_async(
        kwargs={"tenant_id": 1, "events": [], "request_id": None},
        countdown=1,
        exchange="audit",
        routing_key=INGEST_QUEUE.name,
    )

    wait_until(lambda: queue_depth(INGEST_QUEUE.name) == 1, timeout=10, what="the retry")
    assert queue_depth("maintenance") == maintenance_before


def test_the_worker_reuses_its_database_connection_between_tasks(tenant):
    worker = WorkerProcess(queues=INGEST_QUEUE.name).start()
    try:
        publish(tenant_id=tenant.pk, events=[make_event()])
        wait_stored(tenant.pk, 1)
        before = _worker_backends()
        for _ in range(5):
            publish(tenant_id=tenant.pk, events=[make_event()])
        wait_stored(tenant.pk, 6)
        after = _worker_backends()
    finally:
        worker.stop()

    # Celery's Django fixup closes the connection around each task unless CELERY_DB_REUSE_MAX
    # reaches it: the same backend (pid, start time) must have served all six tasks.
    assert before and before <= after


def _worker_backends() -> set:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, backend_start FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        )
        return set(cursor.fetchall())
