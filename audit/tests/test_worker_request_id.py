"""The worker's log lines about a message carry the request id of the API request that sent
it, also when another task stored it in its transaction (coalesced)."""

import json
import logging

import pytest
from celery import signals
from kombu import Connection

from audit.models import AuditEvent
from audit.tests.ingest_support import make_event, publish, purge_queues, wait_until
from testsupport.worker import WorkerProcess
from traceledger.celery import app
from traceledger.queues import INGEST_QUEUE, SEARCH_QUEUE_NAME
from traceledger.request_id import bound_request_id, current_request_id

log = logging.getLogger("audit.tests")


def test_a_bound_request_id_lasts_for_the_block_and_a_malformed_one_is_not_logged():
    with bound_request_id("req-outer"):
        with bound_request_id("two words\nand a newline"):
            assert current_request_id() == ""
        assert current_request_id() == "req-outer"
    assert current_request_id() == ""


def test_a_task_carrying_a_request_id_logs_under_it_until_it_ends():
    signals.task_prerun.send(
        sender=None, task_id="t1", task=None, args=(), kwargs={"request_id": "req-9"}
    )
    assert current_request_id() == "req-9"
    signals.task_postrun.send(sender=None, task_id="t1", task=None, args=(), kwargs={})
    assert current_request_id() == ""
    signals.task_prerun.send(sender=None, task_id="t2", task=None, args=(), kwargs={"x": 1})
    assert current_request_id() == ""


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_each_message_is_logged_under_its_own_request_id(tenant):
    purge_queues()
    # Queued before the worker starts: its first task takes the others into its transaction.
    sent = {
        publish(tenant_id=tenant.pk, events=[make_event()], request_id=f"req-{i}"): f"req-{i}"
        for i in range(6)
    }
    worker = WorkerProcess(queues=INGEST_QUEUE.name).start()
    try:
        wait_until(lambda: AuditEvent.objects.filter(tenant=tenant).count() == 6)
        wait_until(lambda: len(_settled(worker, sent)) == 6, what="every message settled")
    finally:
        worker.stop()
        purge_queues()

    settled = _settled(worker, sent)
    assert {task_id: line["request_id"] for task_id, line in settled.items()} == sent
    assert any("coalesced into" in line["message"] for line in settled.values())


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_index_tasks_lines_name_the_requests_whose_events_they_index(tenant):
    purge_queues()
    # Index tasks left by earlier tests' workers (on audit.ingest only) would come first.
    with Connection(app.conf.broker_url) as conn:
        conn.default_channel.queue_purge(SEARCH_QUEUE_NAME)
    # Coalesced into one transaction, so most likely one index task for several requests.
    sent = {f"req-ix-{i}" for i in range(4)}
    for request_id in sorted(sent):
        publish(tenant_id=tenant.pk, events=[make_event()], request_id=request_id)
    worker = WorkerProcess(queues=f"{INGEST_QUEUE.name},{SEARCH_QUEUE_NAME}").start()
    try:
        wait_until(lambda: _indexed_for(worker) == sent, what="every request's events indexed")
    finally:
        worker.stop()
        purge_queues()


def _indexed_for(worker: WorkerProcess) -> set[str]:
    """The request ids on the worker's "search.index_events[…] succeeded" lines."""
    found = set()
    for raw in worker.log().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        message = str(line.get("message", ""))
        if message.startswith("Task search.index_events[") and "succeeded" in message:
            found.update(filter(None, [line.get("request_id"), *line.get("request_ids", [])]))
    return found


def _settled(worker: WorkerProcess, task_ids) -> dict[str, dict]:
    """Per task id, the worker's JSON log line saying how its message ended."""
    found = {}
    for raw in worker.log().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue  # Celery's start-up banner
        message = str(line.get("message", ""))
        for task_id in task_ids:
            if f"{task_id}] succeeded" in message or message.startswith(
                f"ingest message {task_id} coalesced"
            ):
                found[task_id] = line
    return found
