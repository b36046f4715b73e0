"""The outbox relay: rows parked while RabbitMQ was down are republished once it is back."""

import logging
import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from audit.models import AuditEvent, OutboxMessage
from audit.services.outbox import outbox_message_create, outbox_relay
from audit.services.submission import events_submit
from audit.tasks_outbox import relay_outbox
from audit.tests.ingest_api_support import (
    broker_port,
    broker_url_via,
    ingest_messages,
    post_json,
    valid_event,
)
from audit.tests.ingest_support import wait_until
from audit.validation import event_normalize
from traceledger.metrics import SCRAPE_COLLECTORS


@pytest.fixture(autouse=True)
def short_publish_timeout(settings, clean_broker):
    settings.TRACELEDGER_PUBLISH_TIMEOUT = 1.0


@pytest.fixture
def broker_proxy(fault_proxy, settings):
    proxy = fault_proxy("127.0.0.1", broker_port())
    settings.CELERY_BROKER_URL = broker_url_via(proxy.port)
    return proxy


def parked(tenant, n_events: int = 1) -> OutboxMessage:
    events = [event_normalize(valid_event()) for _ in range(n_events)]
    payload = {"tenant_id": tenant.pk, "events": events, "request_id": None}
    return outbox_message_create(payload=payload, error="test")


def test_the_relay_republishes_oldest_first_and_deletes_each_confirmed_row(db, tenant):
    rows = [parked(tenant, n) for n in (1, 2, 3)]

    result = outbox_relay()

    assert (result.relayed, result.failed, result.remaining) == (3, 0, 0)
    assert not OutboxMessage.objects.exists()
    messages = ingest_messages(expect=3)
    assert [m["kwargs"] for m in messages] == [row.payload for row in rows]
    assert all(m["headers"]["task"] == "audit.ingest_batch" for m in messages)


def test_the_relay_keeps_rows_and_counts_the_attempt_while_the_broker_is_down(
    db, tenant, broker_proxy
):
    row = parked(tenant)
    broker_proxy.set_mode("refuse")

    result = outbox_relay()

    assert (result.relayed, result.failed, result.remaining) == (0, 1, 1)
    row.refresh_from_db()
    assert row.attempts == 1 and row.last_error


def test_the_relay_ignores_the_open_breaker_and_closes_it_when_the_broker_is_back(
    db, tenant, broker_proxy, key_client
):
    client = key_client(scopes=["ingest"])
    broker_proxy.set_mode("refuse")
    ids = [post_json(client, valid_event()).json()["ids"][0] for _ in range(4)]
    assert OutboxMessage.objects.count() == 4
    broker_proxy.set_mode("pass")

    assert outbox_relay().relayed == 4

    published = [m["kwargs"]["events"][0]["id"] for m in ingest_messages(expect=4)]
    assert published == ids
    # and the API publishes again straight away
    response = post_json(client, valid_event())
    assert response.status_code == 202 and not OutboxMessage.objects.exists()


def test_the_first_relay_after_a_broker_restart_relays_on_a_fresh_connection(
    db, tenant, broker_proxy
):
    """The process's connection died with the broker (a chaos QA run: the first run after
    the broker came back reported it unavailable and the batches waited 10 s more)."""
    parked(tenant)
    assert outbox_relay().relayed == 1  # the process holds a connection now
    broker_proxy.set_mode("reset")  # what a broker restart does to it
    broker_proxy.set_mode("pass")
    row = parked(tenant)

    result = outbox_relay()

    assert (result.relayed, result.failed, result.remaining) == (1, 0, 0)
    assert not OutboxMessage.objects.filter(pk=row.pk).exists()


def test_relay_outbox_command_prints_the_count_and_fails_while_the_broker_is_down(
    db, tenant, broker_proxy
):
    parked(tenant)
    parked(tenant)
    broker_proxy.set_mode("refuse")
    with pytest.raises(CommandError, match="did not confirm"):
        call_command("relay_outbox", stdout=StringIO())
    assert OutboxMessage.objects.count() == 2

    broker_proxy.set_mode("pass")
    out = StringIO()
    call_command("relay_outbox", stdout=out)
    assert "relayed 2 outbox batch(es); 0 remaining" in out.getvalue()


def test_relay_outbox_command_names_the_brokers_reason_when_it_fails(db, tenant, broker_proxy):
    """The operator saw "did not confirm 48 batch(es)" and had to dig the reason out of the
    rows' last_error."""
    parked(tenant)
    broker_proxy.set_mode("refuse")

    with pytest.raises(CommandError) as error:
        call_command("relay_outbox", stdout=StringIO())

    row = OutboxMessage.objects.get()
    message = str(error.value)
    assert message.startswith("RabbitMQ did not confirm 1 batch(es) (")
    assert message.endswith("); they stay in the outbox")
    reason = message.split(" (", 1)[1].rsplit(");", 1)[0]
    assert reason.split(": ", 1)[0].endswith("Error")  # the exception's class
    assert reason.split(": ", 1)[1][:40] in " ".join(row.last_error.split())


def test_relay_outbox_command_shows_progress_on_a_terminal_only(db, tenant, monkeypatch, capsys):
    for _ in range(3):
        parked(tenant)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)

    call_command("relay_outbox", "--chunk-size", "1", stdout=StringIO())
    shown = capsys.readouterr().err
    for _ in range(3):
        parked(tenant)
    call_command("relay_outbox", "--chunk-size", "1", "--no-progress", stdout=StringIO())
    hidden = capsys.readouterr().err
    parked(tenant)
    call_command("relay_outbox", "--chunk-size", "1", stdout=StringIO())  # one chunk: no bar
    single = capsys.readouterr().err
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    for _ in range(3):
        parked(tenant)
    call_command("relay_outbox", "--chunk-size", "1", stdout=StringIO())
    redirected = capsys.readouterr().err

    assert "outbox: 100%" in shown and "3/3" in shown  # not tqdm's scaled "3.00/3.00"
    assert (hidden, single, redirected) == ("", "", "")
    assert not OutboxMessage.objects.exists()


def test_relay_outbox_command_refuses_a_bad_chunk_size(db):
    with pytest.raises(CommandError, match="chunk-size") as error:
        call_command("relay_outbox", "--chunk-size", "0")
    # 1 tells cron "RabbitMQ still refuses"; a typo is 2, as argparse's own refusals.
    assert error.value.returncode == 2


def test_relay_outbox_command_fails_with_1_while_the_broker_refuses(db, tenant, broker_proxy):
    parked(tenant)
    broker_proxy.set_mode("refuse")

    with pytest.raises(CommandError) as error:
        call_command("relay_outbox", stdout=StringIO())
    assert error.value.returncode == 1


def test_relay_outbox_command_documents_its_exit_codes():
    from django.core.management import load_command_class

    text = " ".join(
        load_command_class("audit", "relay_outbox")
        .create_parser("manage.py", "relay_outbox")
        .format_help()
        .split()
    )
    assert "1 RabbitMQ still refuses" in text
    assert "2 could not relay (the database unavailable, bad input)" in text


def test_the_periodic_task_relays(db, tenant):
    parked(tenant)
    assert relay_outbox() == {"relayed": 1, "failed": 0, "remaining": 0}


def _warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_periodic_task_skips_quietly_while_the_database_is_down(database_down, caplog):
    database_down()
    for _ in range(2):  # beat: every 10 s
        assert relay_outbox() == {"skipped": "database"}

    [line] = _warnings(caplog)
    assert line.name == "audit.tasks_outbox"
    assert line.exc_info is None
    message = line.getMessage()
    assert message.startswith("outbox relay skipped: database unavailable (OperationalError: ")
    assert message.endswith("); retrying on the next run") and "\n" not in message


def test_the_periodic_task_logs_the_broker_down_once_and_keeps_the_rows(
    db, tenant, broker_proxy, caplog
):
    parked(tenant)
    broker_proxy.set_mode("refuse")
    for _ in range(2):
        assert relay_outbox() == {"relayed": 0, "failed": 1, "remaining": 1}

    [line] = [r for r in _warnings(caplog) if r.name == "audit.tasks_outbox"]
    assert line.exc_info is None
    # The publisher's own "publish to RabbitMQ failed", once too (every relay run and every
    # request would repeat it).
    failed = [r for r in _warnings(caplog) if r.getMessage() == "publish to RabbitMQ failed"]
    assert len(failed) == 1
    message = line.getMessage()
    assert message.startswith("outbox relay stopped: broker unavailable (PublishError: ")
    assert message.endswith("; 1 batch(es) stay in the outbox, retrying on the next run")
    assert OutboxMessage.objects.count() == 1


def test_the_periodic_task_raises_an_error_that_is_not_an_outage(db, monkeypatch):
    def bug(**kwargs):
        raise KeyError("tenant_id")

    monkeypatch.setattr("audit.services.outbox.outbox_relay", bug)
    with pytest.raises(KeyError):
        relay_outbox()


@pytest.mark.django_db(transaction=True)
def test_a_row_locked_by_another_relay_is_skipped_not_waited_for(tenant):
    locked, free = parked(tenant), parked(tenant)
    holding = threading.Event()
    release = threading.Event()

    def other_relay():
        with transaction.atomic():
            list(OutboxMessage.objects.select_for_update().filter(pk=locked.pk))
            holding.set()
            release.wait(10)
        connection.close()

    thread = threading.Thread(target=other_relay)
    thread.start()
    try:
        assert holding.wait(5)
        result = outbox_relay()
    finally:
        release.set()
        thread.join(10)

    assert result.relayed == 1
    assert list(OutboxMessage.objects.values_list("pk", flat=True)) == [locked.pk]
    assert ingest_messages(expect=1)[0]["kwargs"] == free.payload


def test_outbox_depth_is_exported_at_scrape_time(client, db, tenant):
    parked(tenant, 3)
    parked(tenant, 2)
    text = client.get("/metrics").content.decode()
    assert "traceledger_outbox_depth 2.0" in text
    assert "traceledger_outbox_events 5.0" in text
    assert any(type(c).__name__ == "OutboxDepthCollector" for c in SCRAPE_COLLECTORS)


def test_events_submit_reports_where_the_events_went(db, tenant, broker_proxy):
    event = event_normalize(valid_event())
    assert events_submit(tenant_id=tenant.pk, events=[event], request_id=None) == "broker"
    broker_proxy.set_mode("refuse")
    assert events_submit(tenant_id=tenant.pk, events=[event], request_id="r") == "outbox"
    assert OutboxMessage.objects.get().payload["request_id"] == "r"


def test_with_the_outbox_down_too_an_open_breaker_does_not_keep_the_broker_from_taking_it(
    tenant, broker_proxy, database_down
):
    """RabbitMQ back while its breaker was still open, and PostgreSQL down: posts were 503
    "neither accepted" for up to the breaker's reset timeout (API client QA)."""
    from audit.publisher import BREAKER_FAIL_MAX, breaker_is_open

    event = event_normalize(valid_event())
    broker_proxy.set_mode("refuse")
    for n in range(BREAKER_FAIL_MAX):
        assert events_submit(tenant_id=tenant.pk, events=[event], request_id=f"r{n}") == "outbox"
    assert breaker_is_open()
    broker_proxy.set_mode("pass")
    database_down()

    assert events_submit(tenant_id=tenant.pk, events=[event], request_id="back") == "broker"

    assert not breaker_is_open()
    [message] = ingest_messages(expect=1)
    assert message["kwargs"]["request_id"] == "back"


def test_with_the_outbox_down_a_batch_already_sent_is_answered_when_rabbitmq_confirms_it(
    tenant, broker_proxy, database_down
):
    """The request stopped waiting while the publisher thread had sent its message; the
    outbox then failed too. It answered 503 "nothing was accepted", and RabbitMQ confirmed
    the message a moment later: a client retrying events without event_ids stored them twice
    (code review). It now waits for that confirm, as long as the thread does."""
    event = event_normalize(valid_event())
    assert events_submit(tenant_id=tenant.pk, events=[event], request_id="warm") == "broker"
    broker_proxy.set_mode("stall")  # sent, held: no confirm comes back
    database_down()
    released = threading.Timer(1.6, broker_proxy.set_mode, args=["pass"])
    released.start()
    try:
        where = events_submit(tenant_id=tenant.pk, events=[event], request_id="late")
    finally:
        released.cancel()

    assert where == "broker"
    messages = ingest_messages(expect=2)
    assert [m["kwargs"]["request_id"] for m in messages] == ["warm", "late"]


@pytest.mark.integration
def test_events_parked_while_the_broker_was_down_are_stored_exactly_once_after_it_returns(
    celery_worker_process, tenant, broker_proxy, key_client
):
    """End to end: API → outbox (broker refused, then hanging) → relay → real worker."""
    client = key_client(scopes=["ingest"])
    broker_proxy.set_mode("refuse")
    first = post_json(client, [valid_event(event_id=f"r-{i}") for i in range(5)])
    broker_proxy.set_mode("blackhole")
    second = post_json(client, [valid_event(event_id=f"b-{i}") for i in range(5)])
    assert first.status_code == second.status_code == 202
    assert OutboxMessage.objects.count() == 2
    ids = first.json()["ids"] + second.json()["ids"]

    broker_proxy.set_mode("pass")
    assert outbox_relay().relayed == 2
    wait_until(
        lambda: AuditEvent.objects.filter(pk__in=ids).count() == len(ids),
        timeout=30,
        what="every parked event stored",
    )
    stored = AuditEvent.objects.filter(tenant=tenant, event_id__regex=r"^[rb]-[0-4]$")
    assert sorted(str(pk) for pk in stored.values_list("pk", flat=True)) == sorted(ids)


@pytest.mark.integration
def test_a_batch_relayed_twice_is_stored_once(celery_worker_process, tenant):
    row = parked(tenant, 3)
    payload = row.payload
    assert outbox_relay().relayed == 1
    outbox_message_create(payload=payload)  # the same batch again (crash before delete)
    assert outbox_relay().relayed == 1
    ids = [e["id"] for e in payload["events"]]
    wait_until(
        lambda: AuditEvent.objects.filter(pk__in=ids).count() == 3,
        timeout=30,
        what="the batch stored",
    )
    # both messages processed (the second one finds only duplicates), nothing doubled
    wait_until(lambda: _tasks_succeeded(celery_worker_process) >= 2, timeout=30, what="both tasks")
    event_ids = [e["event_id"] for e in payload["events"]]
    assert AuditEvent.objects.filter(tenant=tenant, event_id__in=event_ids).count() == 3


def _tasks_succeeded(worker) -> int:
    return sum(
        1
        for line in worker.log().splitlines()
        if ("audit.ingest_batch[" in line and "succeeded" in line) or " coalesced into " in line
    )


def test_records_of_one_transaction_for_one_tenant_share_one_row_in_their_order(
    db, django_capture_on_commit_callbacks
):
    """The system tenant's tenant.create and the user.create that made it were two messages,
    which two pool processes could chain the other way round (left alone for sessions)."""
    from django.db import transaction

    from accounts.models import SYSTEM_TENANT_SLUG, Tenant
    from accounts.services import superuser_create

    Tenant.objects.filter(slug=SYSTEM_TENANT_SLUG).delete()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        superuser_create(username="first-root", password="violet-Anchor-47-river")
        with pytest.raises(RuntimeError), transaction.atomic():  # a savepoint rolled back
            superuser_create(username="rolled-back", password="violet-Anchor-47-river")
            raise RuntimeError

    [row] = OutboxMessage.objects.all()
    assert [e["action"] for e in row.payload["events"]] == ["tenant.create", "user.create"]
    assert row.event_count == 2
    assert [e["target_name"] for e in row.payload["events"]][1] == "first-root"
    assert len(callbacks) == 1  # one publish, after the commit


def test_a_record_whose_publish_after_the_commit_failed_says_why_on_its_row(
    db, tenant, broker_proxy, django_capture_on_commit_callbacks
):
    """The admin's outbox page showed such a row with no attempt and no error (QA)."""
    from audit.services.submission import record_system_event

    broker_proxy.set_mode("refuse")
    with django_capture_on_commit_callbacks(execute=True):
        record_system_event(
            tenant_id=tenant.pk, action="api_key.create", actor_id="ops", with_transaction=True
        )

    [row] = OutboxMessage.objects.all()
    assert row.attempts == 1
    assert row.last_error
