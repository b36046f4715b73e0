"""A worker outlives what its messages and its database do to it: a malformed task message is
dead-lettered instead of stopping the worker, and a database connection cut under an idle
worker is replaced instead of failing every later task. Real worker, broker and PostgreSQL."""

import hashlib
import io
import uuid

import pytest
from django.core.management import call_command
from django.db import connection
from kombu import Connection, Producer

from audit.models import AuditEvent, DeadLetter
from audit.tests.ingest_support import make_event, publish, queue_depth, wait_until
from audit.worker_signals import body_problem
from testsupport.worker import WorkerProcess
from traceledger.celery import app
from traceledger.queues import (
    AUDIT_EXCHANGE,
    DLQ,
    INGEST_QUEUE,
    INGEST_TASK_NAME,
    SEARCH_QUEUE_NAME,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_queues")]

# Each stopped the whole worker: Celery unpacks the body into (args, kwargs, embed) in its
# consumer, before any task runs, and the ValueError/TypeError was "unrecoverable".
MALFORMED = [b'{"hello": "world"}', b"[[], {}]", b"5", b'"abc"', b"[1, 2, 3]"]


class _Message:
    def __init__(self, body, headers=None):
        self.payload = body
        self.headers = {"task": INGEST_TASK_NAME, "id": "t"} if headers is None else headers


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"hello": "world"}, "body is a dict, not Celery's [args, kwargs, embed]"),
        ([[], {}], "body is a list, not Celery's [args, kwargs, embed]"),
        ("abc", "body is a str, not Celery's [args, kwargs, embed]"),
        ([1, 2, 3], "args must be a list, kwargs an object"),
        ([[], {}, 7], "embed must be an object"),
    ],
)
def test_a_body_that_is_not_args_kwargs_embed_is_named(body, problem):
    assert problem in body_problem(_Message(body))


@pytest.mark.parametrize(
    "message",
    [
        _Message([[], {"tenant_id": 1, "events": []}, {}]),
        _Message([[], {}, None]),
        _Message({"args": [], "kwargs": {}}),  # a hybrid protocol 1 body: Celery converts it
        _Message({"task": "x"}, headers={}),  # protocol 1: Celery checks it itself
    ],
)
def test_a_well_formed_body_is_left_to_celery(message):
    assert body_problem(message) is None


def _publish_task_message(body: bytes, *, with_id: bool = True) -> str:
    """Its id: the task id, or, without one, the digest the drain stores the letter under."""
    task_id = str(uuid.uuid4()) if with_id else "sha256:" + hashlib.sha256(body).hexdigest()
    with Connection(app.conf.broker_url) as conn:
        Producer(conn.default_channel).publish(
            body,
            exchange=AUDIT_EXCHANGE,
            routing_key=INGEST_QUEUE.name,
            content_type="application/json",
            content_encoding="utf-8",
            headers={"task": INGEST_TASK_NAME, **({"id": task_id} if with_id else {})},
            delivery_mode=2,
        )
    return task_id


@pytest.mark.integration
def test_malformed_task_messages_are_dead_lettered_and_the_worker_goes_on(tenant):
    worker = WorkerProcess(queues=INGEST_QUEUE.name).start()
    try:
        bad_ids = [_publish_task_message(body) for body in MALFORMED]
        # One without an id: its note was left under "" and the drain, looking under the
        # body's digest, said only "rejected by the worker".
        bad_ids.append(_publish_task_message(b'{"no": "id"}', with_id=False))
        event = make_event()
        publish(tenant_id=tenant.pk, events=[event])

        wait_until(
            lambda: AuditEvent.objects.filter(event_id=event["event_id"]).exists(),
            what="the good event behind the malformed ones stored",
        )
        wait_until(lambda: queue_depth(DLQ.name) == len(bad_ids), what="the malformed in the DLQ")
        assert worker.proc.poll() is None, worker.log()
    finally:
        worker.stop()
    assert "Unrecoverable error" not in worker.log()

    call_command("drain_dlq", verbosity=0)
    letters = {letter.message_id: letter for letter in DeadLetter.objects.all()}
    assert set(letters) == set(bad_ids)
    assert {letter.reason for letter in letters.values()} == {"malformed task message"}


def _publish_foreign(body: bytes, *, content_type: str, headers: dict) -> None:
    with Connection(app.conf.broker_url) as conn:
        Producer(conn.default_channel).publish(
            body,
            exchange=AUDIT_EXCHANGE,
            routing_key=INGEST_QUEUE.name,
            content_type=content_type,
            content_encoding="utf-8",
            headers=headers,
            delivery_mode=2,
        )


@pytest.mark.integration
def test_messages_celery_rejects_itself_are_logged_as_dead_lettered_each_one():
    """Celery's own lines said "deleted" or "discarded" (and are throttled: the second
    header-less message in 30 s logged nothing), while RabbitMQ dead-lettered them all."""
    run = uuid.uuid4().hex
    worker = WorkerProcess(queues=INGEST_QUEUE.name).start()
    try:
        # Ids and body unique to this run: the worker's notes outlive it in Redis.
        _publish_foreign(
            b'{"hello": "%s"}' % run.encode(), content_type="application/json", headers={}
        )
        _publish_foreign(
            b'{"hello": 2}', content_type="application/json", headers={"id": f"f-2-{run}"}
        )
        _publish_foreign(
            b"hello",
            content_type="text/plain",
            headers={"task": INGEST_TASK_NAME, "id": f"f-3-{run}"},
        )
        wait_until(lambda: queue_depth(DLQ.name) == 3, what="the three in the DLQ")
        wait_until(lambda: "'text/plain'); dead-lettering" in worker.log(), what="the last line")
    finally:
        worker.stop()
    lines = [line for line in worker.log().splitlines() if "dead-lettering it to" in line]

    assert [line.split('"message": "', 1)[1].split('", "', 1)[0] for line in lines] == [
        "not a Celery task message (no task header) (message without an id, content type "
        "'application/json'); dead-lettering it to audit.ingest.dlq",
        f"not a Celery task message (no task header) (message f-2-{run}, content type "
        "'application/json'); dead-lettering it to audit.ingest.dlq",
        "invalid task message: Refusing to deserialize untrusted content of type text/plain "
        f"(text/plain) (message f-3-{run}, content type 'text/plain'); dead-lettering it to "
        "audit.ingest.dlq",
    ]
    assert all('"level": "ERROR", "logger": "audit.worker_signals"' in line for line in lines)
    # And the drain stores each with that reason, not "rejected by the worker".
    call_command("drain_dlq", stdout=io.StringIO())
    reasons = dict(DeadLetter.objects.values_list("message_id", "reason"))
    assert reasons.pop(f"f-2-{run}") == "not a Celery task message (no task header)"
    assert reasons.pop(f"f-3-{run}").startswith("invalid task message: Refusing to deserialize")
    assert list(reasons.values()) == ["not a Celery task message (no task header)"]


@pytest.mark.integration
def test_a_worker_whose_database_connections_were_cut_goes_on_storing(tenant):
    """The cut is noticed first by a query outside a transaction (the search sweep's tenant
    list): Django left that connection broken, and every later task of the process failed
    on it (``atomic()`` could not even begin) until the ingest retries ran out."""
    worker = WorkerProcess(queues=f"{INGEST_QUEUE.name},{SEARCH_QUEUE_NAME}").start()
    try:
        first = make_event()
        publish(tenant_id=tenant.pk, events=[first])
        wait_until(
            lambda: AuditEvent.objects.filter(event_id=first["event_id"]).exists(),
            what="the first event stored (the worker holds a connection now)",
        )
        # Idle, as the test means it: the first event's index task is done too (a cut in
        # the middle of it is a retry, which is not what this test is about).
        wait_until(
            lambda: any(
                "search.index_events[" in line and "] succeeded" in line
                for line in worker.log().splitlines()
            ),
            what="the first event indexed",
        )
        # What a PostgreSQL restart or a dropped network path does to an idle worker.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert cursor.fetchone()[0] >= 1
        sweep = app.send_task("search.sweep_index", queue=SEARCH_QUEUE_NAME).id
        wait_until(lambda: f"{sweep}]" in worker.log(), what="the sweep run")

        second = make_event()
        publish(tenant_id=tenant.pk, events=[second])
        wait_until(
            lambda: AuditEvent.objects.filter(event_id=second["event_id"]).exists(),
            what="the batch after the cut stored",
            timeout=20,
        )
    finally:
        worker.stop()
    # Replaced before it was used: neither task had to fail first.
    assert "OperationalError" not in worker.log(), worker.log()
    assert queue_depth(DLQ.name) == 0
