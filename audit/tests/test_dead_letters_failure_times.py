"""first_failed_at / last_failed_at of a dead letter: the first and the last failure.

A Celery retry is a new message, and Celery drops ``x-death`` from it, so when retries run
out RabbitMQ's ``x-death`` only knows the last failure (and the retry's wait in the
delayed-delivery queues). The first failure travels in ``x-tl-first-failed-at``, which the
task sets on its first retry and Celery copies into every later one.
"""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.utils import timezone

from audit.models import DeadLetter
from audit.services.dead_letters import FIRST_FAILED_HEADER, dead_letter_fields, dead_letters_drain
from audit.services.ingest import events_ingest
from audit.tests.ingest_support import make_event, publish, purge_queues, queue_depth, wait_until
from testsupport.worker import WorkerProcess
from traceledger.queues import DLQ, INGEST_DELIVERY_LIMIT, INGEST_QUEUE

T = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def dlq_message(**headers) -> SimpleNamespace:
    """A retried ingest message as it sits in the DLQ after its last failure."""
    return SimpleNamespace(
        body=b'[[], {"tenant_id": 1, "events": [], "request_id": null}, {}]',
        content_type="application/json",
        content_encoding="utf-8",
        properties={},
        delivery_tag=1,
        headers={"id": "task-1", "task": "audit.ingest_batch", "retries": 8, **headers},
    )


# RabbitMQ puts the latest death first. The retry waited in two delayed-delivery levels
# (the countdown's binary digits) before its last attempt failed.
X_DEATH = [
    {"queue": "audit.ingest", "reason": "rejected", "time": T + timedelta(minutes=3), "count": 1},
    {"queue": "celery_delayed_0", "reason": "expired", "time": T + timedelta(minutes=2)},
    {"queue": "celery_delayed_5", "reason": "expired", "time": T + timedelta(minutes=1)},
]


@pytest.mark.django_db
def test_it_takes_the_first_failure_the_retries_carried_and_the_last_from_x_death():
    fields = dead_letter_fields(
        dlq_message(**{"x-death": X_DEATH, FIRST_FAILED_HEADER: T.isoformat()})
    )

    assert fields["first_failed_at"] == T
    assert fields["last_failed_at"] == T + timedelta(minutes=3)
    assert fields["attempts"] == 9
    assert fields["original_queue"] == "audit.ingest"


@pytest.mark.django_db
def test_a_wait_in_the_delayed_delivery_queues_is_not_a_failure():
    # A message rejected on its first delivery (no retry, so no carried header).
    fields = dead_letter_fields(dlq_message(**{"x-death": X_DEATH}))

    assert fields["first_failed_at"] == fields["last_failed_at"] == T + timedelta(minutes=3)


@pytest.mark.django_db
@pytest.mark.parametrize("garbage", ["yesterday", 10**30, None, ["x"]])
def test_an_unreadable_first_failure_header_is_ignored(garbage):
    fields = dead_letter_fields(dlq_message(**{"x-death": X_DEATH, FIRST_FAILED_HEADER: garbage}))

    assert fields["first_failed_at"] == T + timedelta(minutes=3)


LOCK_TIMEOUT = 2  # seconds each attempt waits for the chain head before failing


@pytest.fixture
def clean_queues():
    purge_queues()
    yield
    purge_queues()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_batch_that_runs_out_of_retries_keeps_the_time_of_its_first_failure(tenant, clean_queues):
    events_ingest(tenant_id=tenant.pk, events=[make_event()])  # the chain head exists
    worker = WorkerProcess(
        queues=INGEST_QUEUE.name,
        extra_env={
            "TRACELEDGER_INGEST_LOCK_TIMEOUT": str(LOCK_TIMEOUT),
            "TRACELEDGER_INGEST_MAX_RETRIES": "2",
        },
    ).start()
    try:
        with connection.cursor() as cursor:
            # The operator's repro: another session holds the tenant's chain head.
            cursor.execute("BEGIN")
            cursor.execute(
                "SELECT 1 FROM audit_chainhead WHERE tenant_id = %s FOR UPDATE", [tenant.pk]
            )
            published = timezone.now()
            secret = {**make_event(), "description": "Ms Example's salary review"}
            task_id = publish(tenant_id=tenant.pk, events=[secret])
            wait_until(lambda: queue_depth(DLQ.name) == 1, timeout=40, what="the dead letter")
            cursor.execute("ROLLBACK")
    finally:
        worker.stop()

    # No line of any attempt shows the event itself (Celery's per-delivery "received" lines,
    # which carried the kwargsrepr, are off: see LOGGING).
    log = worker.log()
    assert task_id in log
    assert "salary" not in log

    assert dead_letters_drain().moved == 1
    letter = DeadLetter.objects.get()
    assert letter.message_id == task_id
    assert letter.attempts == 3
    assert "lock timeout" in letter.exception
    # Each attempt waits LOCK_TIMEOUT: the first fails after one wait, and before the second
    # attempt could have failed (two waits); the last failure is two waits later.
    lock_wait = timedelta(seconds=LOCK_TIMEOUT)
    assert published + lock_wait <= letter.first_failed_at < published + 2 * lock_wait
    # x-death times are whole seconds.
    assert letter.last_failed_at >= letter.first_failed_at + 2 * lock_wait - timedelta(seconds=1)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("death", "retries", "attempts"),
    [
        # The DLQ's own count (the drain left it queued twice): not the worker's attempts.
        ({"queue": "audit.ingest", "reason": "rejected", "time": T, "count": 1}, 0, 1),
        ({"queue": "audit.ingest", "reason": "rejected", "time": T, "count": 1}, 2, 3),
        # Dead-lettered at the ingest queue's delivery limit: delivered limit + 1 times.
        (
            {"queue": "audit.ingest", "reason": "delivery_limit", "time": T, "count": 1},
            0,
            INGEST_DELIVERY_LIMIT + 1,
        ),
    ],
)
def test_attempts_are_the_workers_not_the_dlqs_deliveries(death, retries, attempts):
    fields = dead_letter_fields(
        dlq_message(**{"x-death": [death], "x-delivery-count": 2, "retries": retries})
    )

    assert fields["attempts"] == attempts
