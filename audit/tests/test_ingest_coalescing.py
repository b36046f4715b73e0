"""Several waiting messages in one transaction (issue 9), with a real worker and RabbitMQ.

Messages are queued *before* the worker starts, so its first task finds them waiting and
takes them into its transaction (``audit.coalescer``).
"""

import uuid

import pytest
from django.db import connection
from kombu import Connection

from audit.coalescer import Coalescer
from audit.models import AuditEvent
from audit.services.dead_letters import dead_letters_drain
from audit.tests.ingest_support import (
    left_in_queue,
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
from traceledger.celery import app
from traceledger.queues import DLQ, INGEST_QUEUE

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def clean_queues():
    purge_queues()
    yield
    purge_queues()


def stored(tenant_id: int) -> int:
    return AuditEvent.objects.filter(tenant_id=tenant_id).count()


def coalesced_lines(worker: WorkerProcess) -> list[str]:
    return [line for line in worker.log().splitlines() if " coalesced into " in line]


def _hold_chain_head(cursor, tenant_id: int) -> None:
    from audit.services.ingest import events_ingest

    events_ingest(tenant_id=tenant_id, events=[make_event()])  # the head row exists
    cursor.execute("BEGIN")
    cursor.execute("SELECT 1 FROM audit_chainhead WHERE tenant_id = %s FOR UPDATE", [tenant_id])


def test_waiting_messages_of_two_tenants_are_stored_together_once_and_acked(
    tenant, other_tenant, tmp_path
):
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    batches = {tenant.pk: [], other_tenant.pk: []}
    published = set()
    for i in range(24):
        tenant_id = tenant.pk if i % 2 else other_tenant.pk
        events = [make_event() for _ in range(10)]
        batches[tenant_id].append(events)
        published.add(publish(tenant_id=tenant_id, events=events))
    # A client retry: the same request published again; its events must be dropped.
    late = publish(tenant_id=tenant.pk, events=batches[tenant.pk][0])
    published.add(late)

    worker = WorkerProcess(
        queues=INGEST_QUEUE.name, extra_env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    ).start()
    try:
        wait_until(lambda: stored(tenant.pk) == 120 and stored(other_tenant.pk) == 120)
        line = wait_until(lambda: settled_line(worker.log(), late), what="the duplicate")
        # Rows are visible at commit, the ack comes after: stopping the worker in between
        # hands the message back to the queue (as it should). Wait for every settlement.
        wait_until(
            lambda: all(settled_line(worker.log(), task_id) for task_id in published),
            what="every message settled",
        )
    finally:
        worker.stop()

    assert "'stored': 0, 'duplicates': 10" in line
    assert len(coalesced_lines(worker)) >= 10
    for tenant_id, sent in batches.items():
        ids = {e["id"] for events in sent for e in events}
        rows = AuditEvent.objects.filter(tenant_id=tenant_id).values_list("id", flat=True)
        assert {str(pk) for pk in rows} == ids
        assert chain_verifies(tenant_id)
    # The worker is gone: none of these messages was left unacked (back in the queue).
    assert not (left_in_queue(INGEST_QUEUE.name) & published)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    messages = registry.get_sample_value("traceledger_ingest_messages_per_transaction_sum")
    transactions = registry.get_sample_value("traceledger_ingest_messages_per_transaction_count")
    assert messages == 25
    assert transactions < 25 / 2


def _publish_raw(kwargs: dict) -> str:
    """A task message that breaks the contract (the API never sends one)."""
    task_id = str(uuid.uuid4())
    with Connection(app.conf.broker_url) as conn:
        conn.Producer().publish(
            [[], kwargs, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}],
            exchange=INGEST_QUEUE.exchange,
            routing_key=INGEST_QUEUE.routing_key,
            serializer="json",
            headers={"task": "audit.ingest_batch", "id": task_id, "lang": "py", "retries": 0},
            delivery_mode=2,
        )
    return task_id


def test_poison_among_waiting_messages_is_dead_lettered_alone(tenant):
    from audit.models import DeadLetter

    first = [make_event() for _ in range(3)]
    publish(tenant_id=tenant.pk, events=first)
    no_tenant = publish(tenant_id=999_999, events=[make_event()])
    wrong_kwargs = _publish_raw({"tenant_id": tenant.pk, "events": [], "colour": "red"})
    bad_event = make_event(severity="fatal")
    last = [make_event(), bad_event, make_event()]
    publish(tenant_id=tenant.pk, events=last)

    worker = WorkerProcess(queues=INGEST_QUEUE.name).start()
    try:
        wait_until(lambda: stored(tenant.pk) == 5, what="the five good events")
        wait_until(lambda: queue_depth(DLQ.name) == 3, what="three dead letters")
    finally:
        worker.stop()

    assert coalesced_lines(worker), "the messages were not coalesced"
    assert dead_letters_drain().moved == 3
    letters = DeadLetter.objects.all()
    reasons = {letter.message_id.split(":")[0]: letter.reason for letter in letters}
    assert reasons[no_tenant] == "invalid batch: tenant 999999 does not exist"
    assert reasons[wrong_kwargs] == "message does not follow the audit.ingest_batch contract"
    [event_letter] = [r for key, r in reasons.items() if key not in (no_tenant, wrong_kwargs)]
    assert event_letter.startswith("invalid event: severity must be one of"), event_letter
    assert chain_verifies(tenant.pk)
    assert queue_depth(INGEST_QUEUE.name) == 0


def test_a_waiting_message_that_breaks_the_contract_is_dead_lettered_at_once(tenant):
    """Taken as an extra, a message the task could never run is rejected without requeue:
    requeued, it would come straight back to the next take (and to the next worker) until
    the queue's delivery limit dead-letters it as a mere "delivery limit reached"."""
    from audit.models import DeadLetter

    poison = _publish_raw({"tenant_id": tenant.pk, "events": [], "colour": "red"})
    good = publish(tenant_id=tenant.pk, events=[make_event()])
    taker = Coalescer(app.conf.broker_url)  # what a worker process holds, without a worker
    try:
        extras = taker.take(max_messages=1, max_events=100)
        assert [extra.task_id for extra in extras] == [good]
        taker.ack_all(extras)
    finally:
        taker.close()

    wait_until(lambda: queue_depth(DLQ.name) == 1, what="the poison in the DLQ")
    assert queue_depth(INGEST_QUEUE.name) == 0
    assert dead_letters_drain().moved == 1
    letter = DeadLetter.objects.get()
    assert letter.message_id == poison
    assert letter.reason == "message does not follow the audit.ingest_batch contract"
    # Rejected by the coalescer from audit.ingest, on its first delivery.
    deaths = [(d["reason"], d["queue"], d["count"]) for d in letter.headers["x-death"]]
    assert deaths == [("rejected", INGEST_QUEUE.name, 1)]
    assert letter.attempts == 1


def test_acking_a_transactions_extras_leaves_any_other_taken_message_unsettled(tenant):
    """A message taken but not settled (a soft time limit between a rollback and its requeue)
    was acked along with the next transaction's by basic.ack(multiple=True), its rows never
    committed (code review). Each extra is acked by its own tag: the other one comes back."""
    publish(tenant_id=tenant.pk, events=[make_event()])
    publish(tenant_id=tenant.pk, events=[make_event()])
    taker = Coalescer(app.conf.broker_url)
    try:
        _stranded, mine = taker.take(max_messages=2, max_events=100)
        taker.ack_all([mine])
    finally:
        taker.close()  # the channel closes: what it left unacked goes back

    wait_until(lambda: queue_depth(INGEST_QUEUE.name) == 1, what="the stranded message back")


def test_each_thread_has_a_coalescer_of_its_own():
    """Its channel holds one transaction's unacked messages: with a threads or gevent pool,
    two tasks of one process shared it (code review)."""
    import threading

    from audit.coalescer import coalescer

    here = coalescer()
    there = []
    thread = threading.Thread(target=lambda: there.append(coalescer()))
    thread.start()
    thread.join()
    assert coalescer() is here and there[0] is not here


def test_waiting_messages_go_back_to_the_queue_when_the_transaction_fails(tenant, other_tenant):
    """The task's own tenant is free, an extra's tenant is locked: the lock times out, the
    transaction fails, the extra is requeued and the task retries; both are stored once."""
    with connection.cursor() as cursor:
        _hold_chain_head(cursor, other_tenant.pk)
        mine = [make_event() for _ in range(4)]
        theirs = [make_event() for _ in range(6)]
        publish(tenant_id=tenant.pk, events=mine)
        publish(tenant_id=other_tenant.pk, events=theirs)
        worker = WorkerProcess(
            queues=INGEST_QUEUE.name, extra_env={"TRACELEDGER_INGEST_LOCK_TIMEOUT": "0.5"}
        ).start()
        try:
            wait_until(lambda: "retry: Retry in" in worker.log(), what="a retry", timeout=20)
            assert stored(tenant.pk) == 0  # rolled back with the extra
        finally:
            cursor.execute("ROLLBACK")
    try:
        wait_until(lambda: stored(tenant.pk) == 4 and stored(other_tenant.pk) == 7, timeout=30)
    finally:
        worker.stop()

    assert queue_depth(DLQ.name) == 0
    assert chain_verifies(tenant.pk) and chain_verifies(other_tenant.pk)


def test_waiting_messages_taken_by_a_killed_worker_are_redelivered_and_stored_once(tenant):
    with connection.cursor() as cursor:
        _hold_chain_head(cursor, tenant.pk)
        sent = [[make_event() for _ in range(20)] for _ in range(5)]
        task_ids = [publish(tenant_id=tenant.pk, events=events) for events in sent]
        first = WorkerProcess(queues=INGEST_QUEUE.name).start()
        try:
            wait_until(lambda: waiting_on_lock(cursor), timeout=15, what="the worker to block")
            # Its own message is with Celery, the other four are unacked extras.
            assert queue_depth(INGEST_QUEUE.name) == 0
            first.kill()
        finally:
            cursor.execute("ROLLBACK")
            first.stop()

    assert stored(tenant.pk) == 1
    second = WorkerProcess(queues=INGEST_QUEUE.name).start()
    try:
        wait_until(lambda: stored(tenant.pk) == 101, what="every event", timeout=30)
        # Rows are visible at commit, acks go out after: stop only once every message is
        # settled, or the stop itself would requeue what was about to be acked.
        wait_until(
            lambda: all(settled_line(second.log(), task_id) for task_id in task_ids),
            what="every message settled",
        )
    finally:
        second.stop()
    assert chain_verifies(tenant.pk)
    assert queue_depth(INGEST_QUEUE.name) == 0


def test_a_retry_coalesced_behind_a_conflicting_copy_is_dropped_not_dead_lettered(tenant):
    """QA's case, with a real worker: the stored event, then in one transaction a copy with
    other content and an exact retry. Only the conflicting copy reaches the DLQ."""
    from audit.models import DeadLetter
    from audit.services.ingest import CONFLICT_REASON, events_ingest

    original = make_event()
    events_ingest(tenant_id=tenant.pk, events=[original])
    conflict = dict(original, received_at=make_event()["received_at"], description="other")
    retry = dict(original, received_at=make_event()["received_at"])
    publish(tenant_id=tenant.pk, events=[make_event()])
    publish(tenant_id=tenant.pk, events=[conflict])
    late = publish(tenant_id=tenant.pk, events=[retry])

    worker = WorkerProcess(queues=INGEST_QUEUE.name).start()
    try:
        wait_until(lambda: settled_line(worker.log(), late), what="the retry settled")
        wait_until(lambda: queue_depth(DLQ.name) >= 1, what="the conflicting copy")
    finally:
        worker.stop()

    assert coalesced_lines(worker), "the messages were not coalesced"
    assert dead_letters_drain().moved == 1
    letter = DeadLetter.objects.get()
    assert (letter.reason, letter.payload["events"]) == (CONFLICT_REASON, [conflict])
    assert stored(tenant.pk) == 2
