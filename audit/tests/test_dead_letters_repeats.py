"""A drained message whose id already has a row: counted as a repeat, never as a new letter.

The id is the Celery task id, else the AMQP message id, else a digest of the body, so a
producer without ids that sends the same bytes again after its first letter was discarded
folds into the old row. The drain said "moved 1" and the row stayed ``discarded`` with its
old failure times: the new failure left no trace (operator QA). Real RabbitMQ and
PostgreSQL; messages are published straight to the DLQ with the ``x-death`` RabbitMQ gives
a message the worker rejected.
"""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from kombu import Connection, Producer

from audit.models import DeadLetter, DeadLetterStatus
from audit.services import dead_letters as service
from audit.tests.ingest_support import queue_depth
from traceledger.celery import app
from traceledger.queues import DLQ, DLX_EXCHANGE

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_queues")]

BODY = b'{"hello": "world"}'  # no id anywhere: the row is keyed by the body's digest
T = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def rejected_by_the_worker(at: datetime, body: bytes = BODY) -> None:
    with Connection(app.conf.broker_url) as conn:
        Producer(conn.default_channel).publish(
            body,
            exchange=DLX_EXCHANGE,
            routing_key=DLQ.routing_key,
            content_type="application/json",
            content_encoding="utf-8",
            headers={
                "x-death": [{"queue": "audit.ingest", "reason": "rejected", "time": at, "count": 1}]
            },
            delivery_mode=2,
        )


def discarded_letter() -> DeadLetter:
    rejected_by_the_worker(T)
    assert service.dead_letters_drain().new == 1
    DeadLetter.objects.update(
        status=DeadLetterStatus.DISCARDED, status_changed_at=T, status_changed_by="alice"
    )
    return DeadLetter.objects.get()


def test_a_repeat_of_a_discarded_letter_is_reported_and_keeps_its_status():
    letter = discarded_letter()
    rejected_by_the_worker(T + timedelta(days=2))
    rejected_by_the_worker(T + timedelta(days=2), body=b'{"other": 1}')
    out = StringIO()

    call_command("drain_dlq", stdout=out, stderr=StringIO())

    assert out.getvalue().strip() == (
        "moved 2 dead letter(s) from audit.ingest.dlq into the DeadLetter table: 1 new, "
        f"1 repeat(s) of letters already in the table (#{letter.pk}; their last failure time "
        f"is updated). 1 of them had been handled already (#{letter.pk} discarded) and failed "
        "again since; they keep that status: look at them"
    )
    letter.refresh_from_db()
    # The audited discard stands; the new failure shows on the row.
    assert (letter.status, letter.status_changed_by) == (DeadLetterStatus.DISCARDED, "alice")
    assert letter.first_failed_at == T
    assert letter.last_failed_at == T + timedelta(days=2)
    assert letter.attempts == 2
    assert DeadLetter.objects.count() == 2
    assert queue_depth(DLQ.name) == 0


def test_the_same_message_drained_again_changes_nothing_but_is_counted_as_a_repeat():
    # A drain that died between its commit and its acks: RabbitMQ redelivers the very same
    # message, with the same failure time.
    rejected_by_the_worker(T)
    rejected_by_the_worker(T)

    drained = service.dead_letters_drain()

    letter = DeadLetter.objects.get()
    assert (drained.new, drained.repeats) == (1, 1)
    assert drained.repeated == [service.Repeat(id=letter.pk, status="new")]
    assert (drained.handled, drained.handled_before) == (0, [])
    assert (letter.first_failed_at, letter.last_failed_at, letter.attempts) == (T, T, 1)


def test_a_drain_of_new_letters_only_says_moved_as_before():
    rejected_by_the_worker(T)
    out = StringIO()

    call_command("drain_dlq", stdout=out, stderr=StringIO())

    assert out.getvalue().strip() == (
        "moved 1 dead letter(s) from audit.ingest.dlq into the DeadLetter table"
    )


def test_the_admin_pull_warns_of_a_repeat_of_a_discarded_letter(superuser, client, monkeypatch):
    recorded = []
    monkeypatch.setattr(
        "audit.services.submission.record_system_event", lambda **kw: recorded.append(kw)
    )
    letter = discarded_letter()
    rejected_by_the_worker(T + timedelta(days=2))
    client.force_login(superuser)

    response = client.post(reverse("admin:audit_deadletter_pull"), follow=True)

    [message] = list(response.context["messages"])
    assert message.level_tag == "warning"
    assert str(message) == (
        "Pulled 1 dead letter(s) from RabbitMQ: 0 new, 1 repeat(s) of letters already in the "
        f"table (#{letter.pk}; their last failure time is updated). 1 of them had been "
        f"handled already (#{letter.pk} discarded) and failed again since; they keep that "
        "status: look at them."
    )
    assert recorded[0]["metadata"] == {
        "arrived": 1,
        "new": 0,
        "repeats": 1,
        "repeat_of_ids": [letter.pk],
        "via": "admin",
    }
    letter.refresh_from_db()
    assert letter.status == DeadLetterStatus.DISCARDED
    assert letter.last_failed_at == T + timedelta(days=2)


def test_a_drain_of_many_repeats_counts_them_all_and_keeps_the_first_100_by_id():
    # A drain of millions of repeats must not hold (or copy per batch) one entry each.
    bodies = [b'{"n": %d}' % n for n in range(service.REPEATS_KEPT + 5)]
    for body in bodies:
        rejected_by_the_worker(T, body=body)
    assert service.dead_letters_drain().new == len(bodies)
    DeadLetter.objects.update(status=DeadLetterStatus.DISCARDED)
    for body in bodies:
        rejected_by_the_worker(T + timedelta(days=1), body=body)

    drained = service.dead_letters_drain()

    assert (drained.moved, drained.new, drained.repeats, drained.handled) == (105, 0, 105, 105)
    assert len(drained.repeated) == len(drained.handled_before) == service.REPEATS_KEPT
    assert drained.breakdown().startswith("0 new, 105 repeat(s) of letters already in the table")
    assert ", …) and failed again since" in drained.breakdown()
