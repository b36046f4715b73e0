"""Dead letters: poison events reach audit.ingest.dlq, drain_dlq keeps them, replay stores them.

Real RabbitMQ (this vhost), real PostgreSQL, and a real worker where a message is processed.
"""

import os
import socket
import subprocess
import sys
import time
import uuid
from io import StringIO

import amqp
import orjson
import pytest
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError
from django.db import OperationalError, connection, transaction
from kombu import Connection, Producer
from kombu.exceptions import OperationalError as KombuOperationalError

from accounts.models import Tenant
from accounts.signals import Actor
from audit.models import AuditEvent, DeadLetter, DeadLetterStatus, OutboxMessage
from audit.services import dead_letters as service
from audit.services.dead_letters import draining
from audit.services.ingest import CONFLICT_REASON, RejectedEvent
from audit.tests.ingest_support import make_event, publish, queue_depth, wait_until
from testsupport.worker import ROOT, WorkerProcess
from traceledger.celery import app
from traceledger.queues import AUDIT_EXCHANGE, DLQ, INGEST_QUEUE

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_queues")]


@pytest.fixture
def system_tenant():
    """Created up front: creating a tenant is itself recorded as an audit event."""
    from audit.services.submission import system_tenant_id

    return Tenant.objects.get(pk=system_tenant_id())


@pytest.fixture
def worker():
    process = WorkerProcess(queues=INGEST_QUEUE.name).start()
    yield process
    process.stop()


def drain() -> str:
    out = StringIO()
    call_command("drain_dlq", stdout=out, stderr=StringIO())
    return out.getvalue()


def dead_letter_event(tenant_id: int, reason: str = "invalid event: test", **event) -> dict:
    """Put one event in the DLQ exactly as the worker does for a bad event of a batch."""
    sent = make_event(**event)
    service.events_dead_letter(
        tenant_id=tenant_id,
        rejected=[RejectedEvent(event=sent, reason=reason, exception="ValueError: test")],
        request_id="req-dl",
        task_id=str(uuid.uuid4()),
    )
    return sent


@pytest.mark.integration
def test_a_poison_event_is_dead_lettered_alone_drained_and_stored_after_its_cause_is_removed(
    tenant, worker
):
    with connection.cursor() as cursor:
        # A rule the database enforces and the validator does not know: a permanent refusal
        # for one event that can later be lifted (as an operator would after a fix).
        cursor.execute(
            "ALTER TABLE audit_auditevent ADD CONSTRAINT test_no_poison "
            "CHECK (action <> 'poison.action') NOT VALID"
        )
    try:
        good = [make_event() for _ in range(5)]
        poison = make_event(action="poison.action")
        publish(tenant_id=tenant.pk, events=[*good[:2], poison, *good[2:]])

        wait_until(lambda: queue_depth(DLQ.name) == 1, what="the poison event in the DLQ")
        assert set(AuditEvent.objects.values_list("event_id", flat=True)) == {
            e["event_id"] for e in good
        }

        assert "moved 1 dead letter(s)" in drain()
        letter = DeadLetter.objects.get()
        assert letter.payload == {"tenant_id": tenant.pk, "events": [poison], "request_id": "req-1"}
        assert letter.reason.startswith("database refused the event")
        assert "test_no_poison" in letter.reason
        assert letter.tenant_id == tenant.pk
        assert letter.event_count == 1
        assert letter.original_queue == INGEST_QUEUE.name
        assert letter.task_name == "audit.ingest_batch"
        assert letter.last_failed_at is not None
        assert queue_depth(DLQ.name) == 0
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE audit_auditevent DROP CONSTRAINT test_no_poison")

    out = StringIO()
    # The same id twice (a paste from the admin) is one dead letter, nothing "skipped".
    ids = [str(letter.pk)] * 2
    call_command("replay_dead_letters", *ids, "--actor", "ops-alice", stdout=out)

    assert out.getvalue() == "replayed 1 dead letter(s)\n"
    wait_until(lambda: AuditEvent.objects.filter(tenant=tenant).count() == 6, what="the replay")
    assert AuditEvent.objects.get(event_id=poison["event_id"]).action == "poison.action"
    letter.refresh_from_db()
    assert (letter.status, letter.status_changed_by) == (DeadLetterStatus.REPLAYED, "ops-alice")
    # The replay itself is an audit event of the system tenant (stored by the same worker).
    system = Tenant.objects.get(slug="system")
    wait_until(
        lambda: AuditEvent.objects.filter(tenant=system, action="dead_letter.replay").exists(),
        what="the system audit event",
    )
    assert (
        AuditEvent.objects.get(tenant=system, action="dead_letter.replay").actor_id == "ops-alice"
    )


@pytest.mark.integration
def test_an_invalid_event_is_dead_lettered_with_the_field_named(tenant, worker):
    good = make_event()
    bad = make_event(source_ip="999.1.2.3")
    publish(tenant_id=tenant.pk, events=[good, bad])

    wait_until(lambda: queue_depth(DLQ.name) == 1, what="the invalid event in the DLQ")
    drain()

    assert AuditEvent.objects.filter(tenant=tenant).count() == 1
    letter = DeadLetter.objects.get()
    assert letter.reason == "invalid event: source_ip is not an IP address: '999.1.2.3'"
    assert letter.payload["events"] == [bad]


@pytest.mark.integration
def test_a_stored_event_id_posted_with_other_content_is_dead_lettered_not_dropped(tenant, tmp_path):
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    first = make_event()
    retry = dict(first, received_at=make_event()["received_at"])
    other = dict(retry, description="Ada changed the invoice total again")
    worker = WorkerProcess(
        queues=INGEST_QUEUE.name, extra_env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    ).start()
    try:
        publish(tenant_id=tenant.pk, events=[first])
        wait_until(lambda: AuditEvent.objects.filter(tenant=tenant).exists(), what="the first")
        publish(tenant_id=tenant.pk, events=[retry])
        publish(tenant_id=tenant.pk, events=[other])
        wait_until(lambda: queue_depth(DLQ.name) == 1, what="the conflicting copy in the DLQ")
    finally:
        worker.stop()
    drain()

    assert AuditEvent.objects.get(tenant=tenant).description == first["description"]
    letter = DeadLetter.objects.get()
    assert letter.reason == CONFLICT_REASON
    assert "with other description;" in letter.exception
    assert letter.payload["events"] == [other]
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    dead = "traceledger_events_dead_lettered_total"
    assert registry.get_sample_value(dead, {"reason": "conflict"}) == 1
    assert registry.get_sample_value("traceledger_events_duplicates_dropped_total") == 1


@pytest.mark.integration
def test_a_batch_of_an_unknown_tenant_is_rejected_whole_with_a_readable_reason(worker):
    task_id = publish(tenant_id=999999, events=[make_event(), make_event()])

    wait_until(lambda: queue_depth(DLQ.name) == 1, what="the rejected batch in the DLQ")
    drain()

    letter = DeadLetter.objects.get()
    assert letter.message_id == task_id
    assert letter.reason == "invalid batch: tenant 999999 does not exist"
    assert letter.event_count == 2
    assert letter.attempts == 1
    assert letter.original_queue == INGEST_QUEUE.name
    assert letter.first_failed_at is not None
    assert "rejected" in str(letter.headers["x-death"])
    assert "reject requeue=False" in worker.log()
    # Reject is never autoretried: the task ran once.
    assert worker.log().count(f"ingest batch {task_id} rejected") == 1
    # Celery's per-delivery "received" lines are off: during an outage each retry repeated
    # one for every waiting message (operator QA).
    assert f"{task_id}] received" not in worker.log()


@pytest.mark.integration
def test_a_message_the_worker_cannot_decode_is_dead_lettered_not_acked(worker):
    with Connection(app.conf.broker_url) as conn:
        Producer(conn.default_channel).publish(
            b"{not json",
            exchange=AUDIT_EXCHANGE,
            routing_key=INGEST_QUEUE.name,
            content_type="application/json",
            content_encoding="utf-8",
            headers={"task": "audit.ingest_batch", "id": "undecodable-1"},
        )

    wait_until(lambda: queue_depth(DLQ.name) == 1, what="the undecodable message in the DLQ")
    drain()

    letter = DeadLetter.objects.get()
    assert letter.reason == "body is not JSON"
    assert letter.payload == {
        "undecodable_body": "{not json",
        "content_type": "application/json",
        "content_encoding": "utf-8",
    }


def test_draining_the_same_dead_letter_twice_keeps_one_row(tenant):
    sent = make_event()
    for _ in range(2):  # a redelivered batch dead-letters the same event again
        service.events_dead_letter(
            tenant_id=tenant.pk,
            rejected=[RejectedEvent(event=sent, reason="invalid event: x")],
            request_id=None,
            task_id="task-1",
        )

    drained = service.dead_letters_drain()

    assert (drained.moved, drained.new, drained.repeats) == (2, 1, 1)
    letter = DeadLetter.objects.get()
    assert letter.attempts == 2  # the second copy failed later: it counts as another attempt
    assert letter.last_failed_at > letter.first_failed_at
    assert queue_depth(DLQ.name) == 0


def test_a_refused_event_is_kept_when_the_dlq_was_deleted_after_a_first_letter(tenant):
    """kombu declares a queue once per connection: with the DLQ deleted since, the next
    letter was unroutable, confirmed by RabbitMQ and dropped (code review)."""
    letter = {"rejected": [RejectedEvent(event=make_event(), reason="invalid event: x")]}
    service.events_dead_letter(tenant_id=tenant.pk, request_id=None, task_id="t-1", **letter)
    with Connection(app.conf.broker_url) as conn:
        conn.default_channel.queue_delete(DLQ.name)

    letter = {"rejected": [RejectedEvent(event=make_event(), reason="invalid event: y")]}
    service.events_dead_letter(tenant_id=tenant.pk, request_id=None, task_id="t-2", **letter)

    assert queue_depth(DLQ.name) == 1


def test_nothing_is_acked_when_the_drain_cannot_commit(tenant, monkeypatch):
    dead_letter_event(tenant.pk)
    dead_letter_event(tenant.pk)

    def refuse(*args, **kwargs):
        # The database itself failing (not one message it refuses) fails the whole batch.
        raise OperationalError("database went away")

    monkeypatch.setattr(DeadLetter.objects, "get_or_create", refuse)
    with pytest.raises(OperationalError):
        service.dead_letters_drain()

    # The channel closed with the messages unacked: RabbitMQ put them back.
    wait_until(lambda: queue_depth(DLQ.name) == 2, what="the messages back in the DLQ")
    assert DeadLetter.objects.count() == 0


def test_nothing_is_acked_when_the_rows_are_written_but_the_commit_fails(tenant):
    """Every row of the batch is inserted and the commit itself fails: an ack sent any
    earlier than after the commit would lose both messages with no row to show for them."""
    dead_letter_event(tenant.pk)
    dead_letter_event(tenant.pk)
    table = DeadLetter._meta.db_table
    with connection.cursor() as cursor:
        # A deferred constraint trigger runs at COMMIT, after every insert of the batch. The
        # pause gives acks sent before the commit time to settle (a quorum queue settles them
        # asynchronously), so such an ack cannot be undone by the channel closing.
        # SQLSTATE 40001 (serialization failure) reaches Django as an OperationalError.
        cursor.execute(
            "CREATE FUNCTION test_refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN PERFORM pg_sleep(0.5); "
            "RAISE EXCEPTION 'commit refused by the test' USING ERRCODE = '40001'; END $$"
        )
        cursor.execute(
            f"CREATE CONSTRAINT TRIGGER test_refuse_commit AFTER INSERT ON {table} "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_refuse_commit()"
        )
    try:
        with pytest.raises(OperationalError, match="commit refused by the test"):
            service.dead_letters_drain()
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER test_refuse_commit ON {table}")
            cursor.execute("DROP FUNCTION test_refuse_commit()")

    assert DeadLetter.objects.count() == 0
    # Both unacked when the drain's channel closed: RabbitMQ put them back, and they stay.
    wait_until(lambda: queue_depth(DLQ.name) == 2, what="the messages back in the DLQ")
    time.sleep(1.0)
    assert queue_depth(DLQ.name) == 2
    # And a later drain, once the database commits again, stores them.
    assert service.dead_letters_drain().moved == 2
    assert DeadLetter.objects.count() == 2


def test_drain_dlq_reports_progress_and_honours_the_limit(tenant):
    rejected = [RejectedEvent(event=make_event(), reason="invalid event: x") for _ in range(450)]
    service.events_dead_letter(
        tenant_id=tenant.pk, rejected=rejected, request_id=None, task_id="bulk"
    )
    assert service.dlq_depth() == 450

    out, err = StringIO(), StringIO()
    call_command("drain_dlq", "--limit", "420", stdout=out, stderr=err)

    assert "moved 420 dead letter(s)" in out.getvalue()
    assert "200/420 moved" in err.getvalue()
    assert DeadLetter.objects.count() == 420
    # The drain's last basic.get (its ack barrier) hands one message straight back.
    wait_until(lambda: service.dlq_depth() == 30, what="the 30 not drained, ready")


def test_a_drained_dlq_stays_empty_after_the_drain_closes_its_channel(tenant):
    # Quorum queues settle acks asynchronously: closing the channel right after the last
    # acks brought a third or more of them back (operator QA: "moved 380", 147 still there).
    rejected = [RejectedEvent(event=make_event(), reason="invalid event: x") for _ in range(450)]
    service.events_dead_letter(
        tenant_id=tenant.pk, rejected=rejected, request_id=None, task_id="bulk"
    )

    assert service.dead_letters_drain().moved == 450

    deadline = time.monotonic() + 2.0  # returned messages reappear within milliseconds
    while time.monotonic() < deadline:
        assert queue_depth(DLQ.name) == 0
        time.sleep(0.1)
    assert DeadLetter.objects.count() == 450


def test_drain_dlq_refuses_a_bad_limit():
    with pytest.raises(CommandError, match="--limit must be a positive number") as error:
        call_command("drain_dlq", "--limit", "0")
    assert error.value.returncode == 2  # as argparse's own refusals: not "a message left"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_drain_dlq_exits_2_when_rabbitmq_is_unreachable():
    """Cron alerting must tell an outage (2) from a message stuck in the queue (1)."""
    from testsupport.worker import test_database_url  # imported here: pytest would collect it

    result = subprocess.run(
        [sys.executable, "manage.py", "drain_dlq"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{_closed_port()}//",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "CommandError: RabbitMQ is unreachable: cannot read audit.ingest.dlq"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "error",
    [
        amqp.exceptions.RecoverableConnectionError("connection already closed"),
        ConnectionResetError(104, "Connection reset by peer"),
        KombuOperationalError("[Errno 111] Connection refused"),
    ],
)
def test_drain_dlq_exits_2_when_rabbitmq_fails_mid_drain(monkeypatch, error):
    def drain(**kwargs):
        raise error

    monkeypatch.setattr("audit.management.commands.drain_dlq.dead_letters_drain", drain)

    with pytest.raises(CommandError, match="RabbitMQ failed during the drain: ") as raised:
        call_command("drain_dlq", stdout=StringIO(), stderr=StringIO())
    assert raised.value.returncode == 2


def test_drain_dlq_documents_its_exit_codes():
    text = " ".join(
        load_command_class("audit", "drain_dlq")
        .create_parser("manage.py", "drain_dlq")
        .format_help()
        .split()
    )
    assert "1 a message was left in the queue" in text
    assert "2 could not drain (RabbitMQ, the database or Redis unreachable, bad input)" in text


def test_replay_dead_letters_names_unknown_ids_and_replays_nothing(tenant):
    dead_letter_event(tenant.pk)
    service.dead_letters_drain()
    known = DeadLetter.objects.get().pk

    with pytest.raises(CommandError, match=f"no dead letter with id {known + 1000}"):
        call_command("replay_dead_letters", str(known), str(known + 1000))

    assert DeadLetter.objects.get().status == DeadLetterStatus.NEW
    assert queue_depth(INGEST_QUEUE.name) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no dead letters named: give their ids, or --all to replay every new one"),
        (["--all", "1"], "give dead letter ids or --all, not both"),
    ],
)
def test_replay_dead_letters_says_what_is_missing_or_too_much(argv, message):
    with pytest.raises(CommandError) as error:
        call_command("replay_dead_letters", *argv)

    assert str(error.value) == message


def test_replay_all_republishes_new_dead_letters_once(tenant, system_tenant):
    for _ in range(3):
        dead_letter_event(tenant.pk)
    service.dead_letters_drain()
    first = DeadLetter.objects.order_by("pk").first()
    service.dead_letters_discard(
        ids=[first.pk], actor=Actor(id="ops-bob", type="user", name="ops-bob")
    )

    before = queue_depth(INGEST_QUEUE.name)
    out = StringIO()
    call_command("replay_dead_letters", "--all", stdout=out)
    call_command("replay_dead_letters", "--all", stdout=out)

    assert "replayed 2 dead letter(s)" in out.getvalue()
    assert "no new dead letters to replay" in out.getvalue()
    # Two replays plus the system event recording them.
    assert queue_depth(INGEST_QUEUE.name) == before + 3
    statuses = list(DeadLetter.objects.order_by("pk").values_list("status", flat=True))
    assert statuses == [DeadLetterStatus.DISCARDED, DeadLetterStatus.REPLAYED, "replayed"]


def test_replay_dead_letters_says_when_batches_went_to_the_outbox(
    tenant, system_tenant, monkeypatch
):
    from audit.models import OutboxMessage
    from audit.publisher import PublishError

    dead_letter_event(tenant.pk)
    service.dead_letters_drain()

    def unconfirmed(payload, **kwargs):
        raise PublishError("no confirm within 1 s")

    monkeypatch.setattr("audit.services.submission.publish_ingest_batch", unconfirmed)
    out = StringIO()
    call_command("replay_dead_letters", "--all", stdout=out)

    assert out.getvalue().splitlines() == [
        "replayed 1 dead letter(s)",
        "1 of them into the outbox: RabbitMQ did not confirm them; the outbox relay publishes "
        "them to audit.ingest once it is back",
    ]
    assert OutboxMessage.objects.count() >= 1


def test_discard_marks_dead_letters_and_is_recorded(tenant, system_tenant):
    dead_letter_event(tenant.pk)
    service.dead_letters_drain()
    letter = DeadLetter.objects.get()
    before = queue_depth(INGEST_QUEUE.name)

    assert (
        service.dead_letters_discard(
            ids=[letter.pk], actor=Actor(id="ops-bob", type="user", name="ops-bob")
        )
        == 1
    )
    assert (
        service.dead_letters_discard(
            ids=[letter.pk], actor=Actor(id="ops-bob", type="user", name="ops-bob")
        )
        == 0
    )

    letter.refresh_from_db()
    assert (letter.status, letter.status_changed_by) == (DeadLetterStatus.DISCARDED, "ops-bob")
    assert letter.status_changed_at is not None
    assert queue_depth(INGEST_QUEUE.name) == before + 1  # the system audit event, nothing else


def recorded_events(action: str) -> list[tuple[int, dict]]:
    """(tenant id, event) of every ``action`` event waiting in ``audit.ingest``, taken off it.
    The service records in its own transaction, as an outbox row published (confirmed) right
    after the commit, so they are there once the command has returned."""
    found = []
    with Connection(app.conf.broker_url) as conn:
        channel = conn.default_channel
        while (message := channel.basic_get(INGEST_QUEUE.name, no_ack=True)) is not None:
            _, kwargs, _ = orjson.loads(message.body)
            found += [(kwargs["tenant_id"], e) for e in kwargs["events"] if e["action"] == action]
    return found


def new_dead_letters(tenant, count: int) -> list[int]:
    for _ in range(count):
        dead_letter_event(tenant.pk)
    service.dead_letters_drain()
    return list(DeadLetter.objects.order_by("pk").values_list("pk", flat=True))


def test_discard_dead_letters_discards_the_given_ids_and_records_it(tenant, system_tenant):
    first, second, third = new_dead_letters(tenant, 3)

    out = StringIO()
    # The same id twice (a paste from the admin) is one dead letter, nothing "skipped".
    call_command(
        "discard_dead_letters",
        str(first),
        str(first),
        str(second),
        "--actor",
        "ops-alice",
        stdout=out,
    )

    assert out.getvalue() == "discarded 2 dead letter(s)\n"
    letters = {d.pk: d for d in DeadLetter.objects.all()}
    assert [(letters[pk].status, letters[pk].status_changed_by) for pk in (first, second)] == [
        (DeadLetterStatus.DISCARDED, "ops-alice")
    ] * 2
    assert letters[third].status == DeadLetterStatus.NEW
    [(tenant_id, event)] = recorded_events("dead_letter.discard")
    assert tenant_id == system_tenant.pk
    assert (event["actor_id"], event["actor_type"], event["actor_name"]) == (
        "ops-alice",
        "user",
        "ops-alice",
    )
    assert event["metadata"]["dead_letter_ids"] == [first, second]

    out = StringIO()
    call_command("discard_dead_letters", str(second), str(third), stdout=out)

    assert out.getvalue() == (
        "discarded 1 dead letter(s) (skipped: 1 no longer new (replayed or discarded already))\n"
    )
    assert DeadLetter.objects.get(pk=third).status == DeadLetterStatus.DISCARDED
    [(_, event)] = recorded_events("dead_letter.discard")
    assert event["actor_id"].startswith("cli:")  # who ran it, as replay_dead_letters does
    assert event["metadata"]["dead_letter_ids"] == [third]


@pytest.mark.parametrize("action", ["discard", "replay"])
def test_an_action_is_recorded_even_when_its_process_dies_right_after_the_commit(
    tenant, system_tenant, monkeypatch, action
):
    """The record was published after the commit: a process killed in between left the
    letter replayed or discarded and the trail without a word (races QA, SIGKILL)."""
    from audit.services import outbox

    [letter] = new_dead_letters(tenant, 1)
    monkeypatch.setattr(outbox, "_relay_one", lambda pk: None)  # dead before it could publish
    actor = Actor(id="ops-carol", type="user", name="ops-carol")

    if action == "discard":
        service.dead_letters_discard(ids=[letter], actor=actor)
    else:
        service.dead_letters_replay(ids=[letter], actor=actor)

    assert recorded_events(f"dead_letter.{action}") == []  # nothing was published
    [row] = OutboxMessage.objects.filter(tenant_id=system_tenant.pk)
    [event] = row.payload["events"]
    assert (event["action"], event["actor_id"]) == (f"dead_letter.{action}", "ops-carol")
    assert outbox.outbox_relay().relayed >= 1  # beat's relay, every 10 s
    [(tenant_id, _)] = recorded_events(f"dead_letter.{action}")
    assert tenant_id == system_tenant.pk


def test_an_action_rolled_back_leaves_no_record(tenant, system_tenant):
    [letter] = new_dead_letters(tenant, 1)
    actor = Actor(id="ops-dave", type="user", name="ops-dave")

    with pytest.raises(RuntimeError), transaction.atomic():
        service.dead_letters_discard(ids=[letter], actor=actor)
        raise RuntimeError("the caller's transaction fails after the discard")

    assert DeadLetter.objects.get(pk=letter).status == DeadLetterStatus.NEW
    assert not OutboxMessage.objects.exists()
    assert recorded_events("dead_letter.discard") == []


def test_discard_dead_letters_names_unknown_ids_and_discards_nothing(tenant):
    [known] = new_dead_letters(tenant, 1)

    with pytest.raises(CommandError, match=f"^no dead letter with id {known + 1000}$"):
        call_command("discard_dead_letters", str(known), str(known + 1000))

    assert DeadLetter.objects.get().status == DeadLetterStatus.NEW
    assert recorded_events("dead_letter.discard") == []


def test_discard_dead_letters_refuses_an_id_that_is_no_number_and_discards_nothing(tenant):
    [known] = new_dead_letters(tenant, 1)

    with pytest.raises(CommandError, match="argument ID: invalid int value: 'abc'"):
        call_command("discard_dead_letters", str(known), "abc")

    assert DeadLetter.objects.get().status == DeadLetterStatus.NEW
    assert recorded_events("dead_letter.discard") == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no dead letters named: give their ids, or --all to discard every new one"),
        (["--all", "1"], "give dead letter ids or --all, not both"),
    ],
)
def test_discard_dead_letters_says_what_is_missing_or_too_much(argv, message):
    with pytest.raises(CommandError) as error:
        call_command("discard_dead_letters", *argv)

    assert str(error.value) == message


@pytest.mark.parametrize(
    ("argv", "code", "error"),
    [
        (["{known}", "{unknown}"], 1, "CommandError: no dead letter with id {unknown}"),
        (["{known}", "12x"], 2, "argument ID: invalid int value: '12x'"),
        (
            [],
            1,
            "CommandError: no dead letters named: give their ids, or --all to discard every "
            "new one",
        ),
    ],
)
def test_discard_dead_letters_exits_non_zero_with_the_error_and_discards_nothing(
    tenant, argv, code, error
):
    from testsupport.worker import test_database_url  # imported here: pytest would collect it

    [known] = new_dead_letters(tenant, 1)
    ids = {"known": known, "unknown": known + 1000}

    result = subprocess.run(
        [sys.executable, "manage.py", "discard_dead_letters", *(a.format(**ids) for a in argv)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": test_database_url()},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == code
    assert result.stderr.strip().splitlines()[-1].endswith(error.format(**ids))
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert DeadLetter.objects.get().status == DeadLetterStatus.NEW


def test_discard_all_discards_new_dead_letters_once(tenant, system_tenant):
    first, *rest = new_dead_letters(tenant, 3)
    service.dead_letters_discard(
        ids=[first], actor=Actor(id="ops-bob", type="user", name="ops-bob")
    )
    recorded_events("dead_letter.discard")  # ops-bob's, not the command's

    out = StringIO()
    call_command("discard_dead_letters", "--all", "--actor", "ops-alice", stdout=out)
    call_command("discard_dead_letters", "--all", "--actor", "ops-alice", stdout=out)

    assert out.getvalue() == "discarded 2 dead letter(s)\nno new dead letters to discard\n"
    assert list(DeadLetter.objects.order_by("pk").values_list("status", "status_changed_by")) == [
        (DeadLetterStatus.DISCARDED, "ops-bob"),
        (DeadLetterStatus.DISCARDED, "ops-alice"),
        (DeadLetterStatus.DISCARDED, "ops-alice"),
    ]
    [(_, event)] = recorded_events("dead_letter.discard")
    assert event["metadata"]["dead_letter_ids"] == rest


def test_discard_dead_letters_documents_itself():
    text = (
        load_command_class("audit", "discard_dead_letters")
        .create_parser("manage.py", "discard_dead_letters")
        .format_help()
    )

    assert text.startswith("usage: manage.py discard_dead_letters")
    assert "--all" in text and "--actor" in text and "irreversible" in text.lower()


def test_dlq_depth_counts_waiting_messages(tenant):
    assert service.dlq_depth() == 0
    dead_letter_event(tenant.pk)
    assert service.dlq_depth() == 1


@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
def test_dlq_depth_is_none_quickly_when_rabbitmq_is_unreachable(fault_proxy, monkeypatch, mode):
    broker = Connection(app.conf.broker_url)
    proxy = fault_proxy(broker.hostname, broker.port or 5672)
    proxy.set_mode(mode)
    unreachable = broker.clone(hostname="127.0.0.1", port=proxy.port).as_uri(include_password=True)
    monkeypatch.setattr(draining, "_broker_url", lambda: unreachable)

    started = time.monotonic()
    assert service.dlq_depth() is None
    # The admin dashboard calls it on every page view.
    assert time.monotonic() - started < 3


def test_a_dead_lettered_event_keeps_its_submitter_for_the_replay(tenant):
    rejected = [RejectedEvent(event=make_event(), reason="invalid event: x")]
    service.events_dead_letter(
        tenant_id=tenant.pk,
        rejected=rejected,
        request_id="r-1",
        task_id="one",
        submitted_by="api_key:Ab12Cd34",
    )

    assert service.dead_letters_drain().moved == 1

    assert DeadLetter.objects.get().payload["submitted_by"] == "api_key:Ab12Cd34"

    service.dead_letters_replay(
        ids=[DeadLetter.objects.get().pk], actor=Actor(id="ops", type="user", name="ops")
    )

    with Connection(app.conf.broker_url) as conn:
        message = conn.default_channel.basic_get(INGEST_QUEUE.name, no_ack=True)
    _, kwargs, _ = orjson.loads(message.body)
    assert kwargs["events"][0]["action"] != "dead_letter.replay"  # the replayed batch first
    assert kwargs["submitted_by"] == "api_key:Ab12Cd34"
