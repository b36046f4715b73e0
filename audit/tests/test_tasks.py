"""audit.ingest_batch: the retry policy and the reliability settings it depends on (R21)."""

import random

import pytest
from celery.exceptions import Reject, SoftTimeLimitExceeded
from django.conf import settings
from django.db import OperationalError

from audit.tasks import TRANSIENT_ERRORS, ingest_batch, retry_countdown
from traceledger.celery import app
from traceledger.queues import CELERY_QUEUES, DLQ_NAME, INGEST_QUEUE_NAME


def test_the_task_acks_only_after_it_ran_and_requeues_when_its_process_dies():
    assert ingest_batch.acks_late is True
    assert ingest_batch.reject_on_worker_lost is True
    assert app.conf.task_acks_on_failure_or_timeout is False


def test_it_retries_transient_errors_only_never_reject():
    assert Exception not in TRANSIENT_ERRORS
    assert OperationalError in ingest_batch.autoretry_for
    assert Reject in ingest_batch.dont_autoretry_for
    assert ingest_batch.retry_backoff and not ingest_batch.retry_jitter  # equal jitter instead
    assert ingest_batch.max_retries == settings.TRACELEDGER_INGEST_MAX_RETRIES
    # Every countdown and the run time stay far below RabbitMQ's 30 min consumer timeout.
    assert ingest_batch.retry_backoff_max <= 60
    assert ingest_batch.time_limit < 30 * 60


def test_a_batch_that_overruns_its_soft_time_limit_is_retried_not_rejected(monkeypatch):
    """The soft limit ends a task stuck on a database that stopped answering (a dropped
    connection libpq has not noticed): an outage like any other. It was rejected to the DLQ,
    an accepted batch an operator had to replay. (Run eagerly: with a real worker a 2 s soft
    limit did not interrupt a process waiting in libpq for a row lock, so the case cannot be
    staged at a test's scale; an operator saw it at the 240 s default.)"""

    attempts = []

    def stuck(*args, **kwargs):
        attempts.append(1)
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr("audit.tasks.events_ingest_many", stuck)
    monkeypatch.setattr(ingest_batch, "max_retries", 2)
    # Eagerly a retry runs at once, in place; the last one's error is the result.
    result = ingest_batch.apply(kwargs={"tenant_id": 1, "events": []})

    assert len(attempts) == 3  # the first and two retries, none rejected outright
    assert isinstance(result.result, SoftTimeLimitExceeded)
    assert SoftTimeLimitExceeded in ingest_batch.autoretry_for
    assert ingest_batch.soft_time_limit == settings.TRACELEDGER_INGEST_SOFT_TIME_LIMIT
    assert ingest_batch.time_limit == ingest_batch.soft_time_limit + 60


def test_its_retries_ride_out_a_database_outage_of_seven_minutes_and_a_half(monkeypatch):
    """Each wait is between half and all of 1, 2, 4 ... 60 s, in whole seconds, at least 1:
    with the default 20 retries the shortest possible total is 452 s (Celery's full jitter
    could make it ~0). 8 retries (92 s) dead-lettered the batches of a 2-minute failover."""
    caps = [min(60, 2**n) for n in range(settings.TRACELEDGER_INGEST_MAX_RETRIES)]
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    shortest = sum(retry_countdown(cap) for cap in caps)
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    longest = sum(retry_countdown(cap) for cap in caps)

    assert (shortest, longest) == (452, 903)


def test_the_task_spreads_the_countdown_autoretry_gives_it(monkeypatch):
    seen = {}
    monkeypatch.setattr(ingest_batch.request, "headers", None, raising=False)
    monkeypatch.setattr(
        "celery.app.task.Task.retry", lambda self, *a, **kw: seen.update(kw) or "retried"
    )
    monkeypatch.setattr(random, "uniform", lambda low, high: (low + high) / 2)

    assert ingest_batch.retry(countdown=8) == "retried"
    assert seen["countdown"] == 6  # 8 / 2 + 4 / 2
    assert ingest_batch.retry(countdown=1) == "retried"
    assert seen["countdown"] == 1  # never 0: native delayed delivery refuses it


def test_it_names_its_queue_so_delayed_retries_route_back_to_it():
    assert ingest_batch.queue == INGEST_QUEUE_NAME


def test_no_worker_consumes_the_dead_letter_queue():
    assert DLQ_NAME not in {queue.name for queue in CELERY_QUEUES}
    assert DLQ_NAME not in {queue.name for queue in app.conf.task_queues}


def test_undecodable_messages_are_rejected_by_the_worker_consumer():
    assert app.conf.worker_consumer == "audit.worker_signals:DeadLetteringConsumer"


def test_the_django_fixup_reuses_database_connections():
    from celery.fixups.django import DjangoWorkerFixup

    assert DjangoWorkerFixup(app).db_reuse_max == settings.CELERY_DB_REUSE_MAX > 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"events": []},
        {"tenant_id": 1},
        {"tenant_id": 1, "events": [], "request_id": None, "extra": 1},
    ],
)
def test_a_message_off_the_contract_is_rejected_without_requeue(kwargs):
    with pytest.raises(Reject) as raised:
        ingest_batch.run(**kwargs)

    assert raised.value.requeue is False
    assert "does not follow the audit.ingest_batch contract" in str(raised.value.reason)


class _Recorder:
    """Stands in for the coalescer and the dead-letter publisher: records the order."""

    def __init__(self, fail_on: str | None = None):
        self.calls: list[tuple] = []
        self.fail_on = fail_on

    def ack_all(self, extras):
        if extras:
            self.calls.append(("ack", [e.task_id for e in extras]))

    def settle(self, extra, *, ack):
        self.calls.append(("ack" if ack else "reject", [extra.task_id]))

    def requeue(self, extras):
        self.calls.append(("requeue", [e.task_id for e in extras]))

    def dead_letter(self, *, task_id, **kwargs):
        if task_id == self.fail_on:
            raise OSError("broker gone")
        self.calls.append(("dead-letter", [task_id]))


def _extra(task_id: str, *, invalid=None, rejected=()):
    from audit.coalescer import Extra
    from audit.services.ingest import Batch, IngestResult

    batch = Batch(tenant_id=1, events=[])
    batch.result = IngestResult(invalid=invalid, rejected=list(rejected))
    return Extra(message=None, task_id=task_id, request_id=None, batch=batch)


@pytest.fixture
def recorder(monkeypatch):
    from audit import tasks

    def install(**kwargs):
        rec = _Recorder(**kwargs)
        monkeypatch.setattr(tasks, "coalescer", lambda: rec)
        monkeypatch.setattr(tasks, "events_dead_letter", rec.dead_letter)
        monkeypatch.setattr(tasks, "dead_letter_note", lambda **kw: None)
        monkeypatch.setattr(
            tasks.logger, "info", lambda msg, task_id, *args: rec.calls.append(("log", [task_id]))
        )
        return rec

    return install


def test_extras_are_acked_together_and_before_any_dead_letter_is_published(recorder):
    from audit.tasks import _settle

    rec = recorder()
    extras = [_extra("a"), _extra("b"), _extra("c", rejected=["x"]), _extra("d", invalid="bad")]
    extras.append(_extra("e"))
    _settle(extras, into="own")
    # Each "coalesced into" line comes after the ack it reports (tests and operators read
    # it as "settled").
    assert rec.calls == [
        ("ack", ["a", "b"]),
        ("log", ["a"]),
        ("log", ["b"]),
        ("dead-letter", ["c"]),
        ("reject", ["d"]),
        ("ack", ["c", "e"]),
        ("log", ["c"]),
        ("log", ["e"]),
    ]


def test_a_failed_dead_letter_requeues_only_what_was_not_settled(recorder):
    from audit.tasks import _settle

    rec = recorder(fail_on="c")
    extras = [_extra("a"), _extra("b"), _extra("c", rejected=["x"]), _extra("d")]
    with pytest.raises(OSError):
        _settle(extras, into="own")
    assert rec.calls == [
        ("ack", ["a", "b"]),
        ("log", ["a"]),
        ("log", ["b"]),
        ("requeue", ["c", "d"]),
    ]
