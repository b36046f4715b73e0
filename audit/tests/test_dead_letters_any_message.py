"""drain_dlq moves every message of the DLQ, whatever its body, headers or encoding.

One message the drain could not store used to roll back its whole batch, put it back at the
head of the queue and so block every later drain (and the admin's pull). Real RabbitMQ (this
vhost), real PostgreSQL; messages are published straight to the DLQ the way an operator's
tool, a foreign producer or the worker itself would leave them there.
"""

import base64
import hashlib
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.urls import reverse
from kombu import Connection, Producer

from audit.models import DeadLetter
from audit.services import dead_letters as service
from audit.services.dead_letters import draining
from audit.services.ingest import RejectedEvent
from audit.tests.ingest_support import make_event, queue_depth, wait_until
from testsupport.worker import WorkerProcess
from traceledger.celery import app
from traceledger.queues import AUDIT_EXCHANGE, DLQ, DLX_EXCHANGE, INGEST_QUEUE

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_queues")]


def publish_to_dlq(
    body,
    *,
    headers: dict | None = None,
    content_type: str = "application/json",
    content_encoding: str = "utf-8",
    exchange=DLX_EXCHANGE,
    routing_key: str = DLQ.routing_key,
) -> None:
    with Connection(app.conf.broker_url) as conn:
        Producer(conn.default_channel).publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            content_type=content_type,
            content_encoding=content_encoding,
            headers=headers or {},
            delivery_mode=2,
        )


def test_it_drains_a_json_message_without_an_id_under_a_digest_of_its_body():
    # Operator's case A: no Celery id header, no AMQP message id. Published twice, as a
    # redelivery would: the fallback id must be stable so that both land in one row.
    publish_to_dlq(b'{"hello": 1}')
    publish_to_dlq(b'{"hello": 1}')

    assert service.dead_letters_drain().moved == 2

    letter = DeadLetter.objects.get()
    assert letter.message_id == "sha256:" + hashlib.sha256(b'{"hello": 1}').hexdigest()
    assert letter.payload == {"hello": 1}
    assert letter.tenant_id is None
    assert letter.event_count == 0
    assert queue_depth(DLQ.name) == 0


@pytest.mark.parametrize(
    "content_type,content_encoding",
    [
        ("application/octet-stream", "binary"),
        # Headers that lie: the client library cannot decode it as the text it claims to be.
        ("application/json", "utf-8"),
    ],
)
def test_it_keeps_a_body_that_is_not_text_as_base64(content_type, content_encoding):
    # Operator's case B: NUL and bytes that are not UTF-8.
    publish_to_dlq(
        b"\x00\xff\xfe",
        headers={"id": "qaops-binary-1"},
        content_type=content_type,
        content_encoding=content_encoding,
    )

    assert service.dead_letters_drain().moved == 1

    letter = DeadLetter.objects.get()
    assert letter.message_id == "qaops-binary-1"
    assert letter.payload == {
        "undecodable_body_base64": "AP/+",
        "content_type": content_type,
        "content_encoding": content_encoding,
    }
    assert base64.b64decode(letter.payload["undecodable_body_base64"]) == b"\x00\xff\xfe"
    assert letter.reason == "body is not text"
    assert queue_depth(DLQ.name) == 0


def test_it_keeps_a_body_that_is_not_json_as_its_text_with_the_content_type():
    publish_to_dlq("{not json, but ünïcode", headers={"id": "text-1"}, content_type="text/plain")

    assert service.dead_letters_drain().moved == 1

    letter = DeadLetter.objects.get()
    assert letter.payload == {
        "undecodable_body": "{not json, but ünïcode",
        "content_type": "text/plain",
        "content_encoding": "utf-8",
    }
    assert letter.reason == "body is not JSON"


@pytest.mark.parametrize(
    "body,reason",
    [
        (
            b'{"n": 1e400}',
            "body holds JSON that PostgreSQL cannot store (NUL, infinity): kept as text",
        ),
        (
            b'"\\ud800"',
            "body holds JSON that PostgreSQL cannot store (NUL, infinity): kept as text",
        ),
        (
            b"[" * 300 + b"]" * 300,
            "body holds JSON that PostgreSQL cannot store (NUL, infinity): kept as text",
        ),
        (b'{"n": NaN}', "body is not JSON"),
        (b"", "body is not JSON"),
    ],
    ids=["infinity", "lone-surrogate", "too-deep", "nan", "empty"],
)
def test_it_keeps_json_that_jsonb_cannot_hold_as_its_text(body, reason):
    publish_to_dlq(body, headers={"id": "odd-json"})

    assert service.dead_letters_drain().moved == 1

    letter = DeadLetter.objects.get()
    assert letter.payload["undecodable_body"] == body.decode()
    assert letter.reason == reason


def test_it_keeps_an_integer_beyond_a_double_exactly():
    publish_to_dlq(b'{"n": 123456789012345678901234567890}', headers={"id": "big-int"})

    assert service.dead_letters_drain().moved == 1

    assert DeadLetter.objects.get().payload == {"n": 123456789012345678901234567890}


def test_it_keeps_an_event_holding_a_nul_character_as_the_json_text_it_came_in(tenant):
    # The worker dead-letters an event with a NUL itself (validation refuses it: PostgreSQL
    # text and jsonb cannot hold one), so the drain meets it in every such case.
    event = make_event(description="before\x00after")
    service.events_dead_letter(
        tenant_id=tenant.pk,
        rejected=[RejectedEvent(event=event, reason="invalid event: description holds NUL")],
        request_id="req-nul",
        task_id="task-nul",
    )

    assert service.dead_letters_drain().moved == 1

    letter = DeadLetter.objects.get()
    assert letter.reason == "invalid event: description holds NUL"
    assert letter.tenant_id == tenant.pk
    assert letter.event_count == 1
    # Kept exactly: JSON text escapes the NUL, and reads back to the published kwargs.
    assert set(letter.payload) == {"undecodable_body", "content_type", "content_encoding"}
    assert json.loads(letter.payload["undecodable_body"]) == {
        "tenant_id": tenant.pk,
        "events": [event],
        "request_id": "req-nul",
    }


def test_it_stores_ids_and_headers_holding_nul_characters_surrogates_and_bytes():
    publish_to_dlq(
        b"[]",
        headers={
            "id": "id-\x00-1",
            "task": "audit.\x00ingest_batch",
            "x-note": "a\x00b",
            "x-raw": b"\xff\x00",  # not UTF-8: py-amqp hands it over as bytes
            "x-surrogate": "\ud800",
            "x-nested": {"deep": ["c\x00d"]},
            "retries": "not a number",
        },
    )

    assert service.dead_letters_drain().moved == 1

    letter = DeadLetter.objects.get()
    assert letter.message_id == "id-\\u0000-1"
    assert letter.task_name == "audit.\\u0000ingest_batch"
    assert letter.headers["x-note"] == "a\\u0000b"
    assert letter.headers["x-nested"] == {"deep": ["c\\u0000d"]}
    assert letter.headers["x-raw"] == r"b'\xff\x00'"
    assert letter.headers["x-surrogate"] == "\\ud800"
    assert letter.attempts == 1
    assert letter.payload == []


@pytest.fixture
def unstorable_msg_1(monkeypatch):
    """``dead_letter_fields`` fails for the message with id ``msg-1`` (a bug nobody foresaw);
    returns the real function, to put back."""
    real = service.dead_letter_fields

    def broken_for_msg_1(message):
        if message.headers.get("id") == "msg-1":
            raise ValueError("something nobody foresaw")
        return real(message)

    # Where the drain looks it up: patching the package's re-export would change nothing.
    monkeypatch.setattr(draining, "dead_letter_fields", broken_for_msg_1)
    return real


def test_a_message_that_cannot_be_stored_is_left_in_the_queue_and_the_others_move(
    monkeypatch, caplog, unstorable_msg_1
):
    for n in range(3):
        publish_to_dlq(b'{"n": %d}' % n, headers={"id": f"msg-{n}"})
    real = unstorable_msg_1
    left = []

    assert (
        service.dead_letters_drain(on_left=lambda mid, exc: left.append((mid, str(exc)))).moved == 2
    )

    assert set(DeadLetter.objects.values_list("message_id", flat=True)) == {"msg-0", "msg-2"}
    assert left == [("msg-1", "something nobody foresaw")]
    assert "msg-1" in caplog.text and "something nobody foresaw" in caplog.text
    # Never acked: back in the queue for a drain once the cause is fixed.
    wait_until(lambda: queue_depth(DLQ.name) == 1, timeout=5, what="msg-1 back in the DLQ")

    # The next drain meets it first and still ends: held unacked, a message is not handed
    # out again by the same drain, so the loop cannot spin on it.
    left.clear()
    assert service.dead_letters_drain(on_left=lambda mid, exc: left.append(mid)).moved == 0
    assert left == ["msg-1"]
    wait_until(lambda: queue_depth(DLQ.name) == 1, timeout=5, what="msg-1 back in the DLQ")

    monkeypatch.setattr(draining, "dead_letter_fields", real)
    assert service.dead_letters_drain().moved == 1
    assert DeadLetter.objects.count() == 3


def test_drain_dlq_reports_messages_it_left_in_the_queue_and_fails(unstorable_msg_1):
    publish_to_dlq(b'{"n": 0}', headers={"id": "msg-0"})
    publish_to_dlq(b'{"n": 1}', headers={"id": "msg-1"})
    out, err = StringIO(), StringIO()

    # Non-zero exit status: an unattended drain must tell someone. 1, not 2: a stuck
    # message needs a person, an outage only the next run.
    with pytest.raises(CommandError, match=r"1 message\(s\) could not be stored.*msg-1") as e:
        call_command("drain_dlq", stdout=out, stderr=err)
    assert e.value.returncode == 1

    assert "moved 1 dead letter(s)" in out.getvalue()
    assert "msg-1: ValueError: something nobody foresaw" in err.getvalue()
    assert DeadLetter.objects.get().message_id == "msg-0"


def test_the_admin_pull_moves_a_binary_message_with_the_rest(superuser, client, monkeypatch):
    monkeypatch.setattr("audit.services.submission.record_system_event", lambda **kw: None)
    publish_to_dlq(b"\x00\xff\xfe", headers={"id": "qaops-binary-1"}, content_type="x/bin")
    publish_to_dlq(b'{"hello": 1}')
    client.force_login(superuser)

    response = client.post(reverse("admin:audit_deadletter_pull"), follow=True)

    assert "Pulled 2 dead letter(s) from RabbitMQ." in response.content.decode()
    assert DeadLetter.objects.count() == 2


@pytest.mark.integration
def test_a_foreign_json_message_rejected_by_the_worker_is_drained():
    # Case A end to end: not a Celery message at all, published where the worker consumes.
    worker = WorkerProcess(queues=INGEST_QUEUE.name).start()
    try:
        publish_to_dlq(b'{"hello": 1}', exchange=AUDIT_EXCHANGE, routing_key=INGEST_QUEUE.name)
        wait_until(lambda: queue_depth(DLQ.name) == 1, what="the foreign message in the DLQ")
    finally:
        worker.stop()

    out = StringIO()
    call_command("drain_dlq", stdout=out, stderr=StringIO())

    assert "moved 1 dead letter(s)" in out.getvalue()
    letter = DeadLetter.objects.get()
    assert letter.message_id == "sha256:" + hashlib.sha256(b'{"hello": 1}').hexdigest()
    assert letter.payload == {"hello": 1}
    assert letter.original_queue == INGEST_QUEUE.name
    assert letter.first_failed_at is not None
    assert queue_depth(DLQ.name) == 0


def _noted_and_headed_letters() -> None:
    """One letter whose reason the worker left in Redis, one carrying it in its headers."""
    service.dead_letter_note(task_id="noted-1", reason="invalid event: action is required")
    publish_to_dlq(b'[[], {"tenant_id": 1, "events": []}, {}]', headers={"id": "noted-1"})
    service.events_dead_letter(
        tenant_id=1,
        rejected=[RejectedEvent(event=make_event(), reason="conflict: test", exception="")],
        request_id="r-1",
        task_id="headed-1",
    )


def test_a_drain_while_redis_is_down_takes_nothing_from_the_queue(fault_proxy, settings):
    """Drained during a Redis outage, a letter was stored as "rejected by the worker" for
    good, while its real reason sat in Redis until it expired. Each message a drain takes
    and returns raises its delivery count on the quorum DLQ (RabbitMQ 4 drops one past 20),
    so nothing is taken at all until Redis answers."""
    _noted_and_headed_letters()

    with _redis_cut(fault_proxy, settings), pytest.raises(CommandError) as refused:
        call_command("drain_dlq", stdout=StringIO(), stderr=StringIO())

    assert refused.value.returncode == 2
    assert str(refused.value) == (
        "Redis does not answer, and it holds why the worker rejected some letters: nothing "
        "was taken from the queue; drain again once Redis is back"
    )
    assert queue_depth(DLQ.name) == 2 and not DeadLetter.objects.exists()

    assert service.dead_letters_drain().moved == 2  # Redis answers again
    letter = DeadLetter.objects.get(message_id="noted-1")
    assert letter.reason == "invalid event: action is required"
    assert letter.attempts == 1


def test_a_letter_whose_reason_is_in_redis_waits_if_redis_goes_away_mid_drain(
    fault_proxy, settings, monkeypatch
):
    """Redis answered when the drain began, and not when it read the note: that letter
    stays queued (the drain stops after its batch); one carrying its reason moves."""
    _noted_and_headed_letters()
    monkeypatch.setattr(draining, "dead_letter_notes_reachable", lambda: None)
    err = StringIO()

    with _redis_cut(fault_proxy, settings), pytest.raises(CommandError) as refused:
        call_command("drain_dlq", stdout=StringIO(), stderr=err)

    assert refused.value.returncode == 2
    assert "Redis does not answer" in str(refused.value)
    assert "left in audit.ingest.dlq: noted-1: NoteUnavailable" in err.getvalue()
    assert list(DeadLetter.objects.values_list("message_id", flat=True)) != ["noted-1"]
    assert DeadLetter.objects.count() == 1 and queue_depth(DLQ.name) == 1

    assert service.dead_letters_drain().moved == 1  # Redis answers again
    letter = DeadLetter.objects.get(message_id="noted-1")
    assert letter.reason == "invalid event: action is required"
    # Taken and returned once by the drain above: the DLQ's own x-delivery-count, which
    # attempts used to take, is no attempt of the worker.
    assert letter.attempts == 1


def test_the_admin_pull_says_why_nothing_was_pulled_while_redis_is_down(
    superuser, client, monkeypatch, fault_proxy, settings
):
    monkeypatch.setattr("audit.services.submission.record_system_event", lambda **kw: None)
    _noted_and_headed_letters()
    client.force_login(superuser)

    with _redis_cut(fault_proxy, settings):
        response = client.post(reverse("admin:audit_deadletter_pull"), follow=True)

    page = response.content.decode()
    assert "Nothing pulled: Redis does not answer" in page
    assert queue_depth(DLQ.name) == 2 and not DeadLetter.objects.exists()


def test_the_admin_pull_says_and_records_which_letters_wait_for_redis_mid_pull(
    superuser, client, monkeypatch, fault_proxy, settings
):
    recorded = []
    monkeypatch.setattr(
        "audit.services.submission.record_system_event", lambda **kw: recorded.append(kw)
    )
    monkeypatch.setattr(draining, "dead_letter_notes_reachable", lambda: None)
    _noted_and_headed_letters()
    client.force_login(superuser)

    with _redis_cut(fault_proxy, settings):
        response = client.post(reverse("admin:audit_deadletter_pull"), follow=True)

    page = response.content.decode()
    assert "Pulled 1 dead letter(s) from RabbitMQ." in page
    assert "1 dead letter(s) stay in RabbitMQ for now, and the pull stopped: Redis" in page
    [drain] = [r for r in recorded if r["action"] == "dead_letter.drain"]
    assert drain["metadata"]["left_waiting_for_redis"] == 1
    assert drain["description"].endswith("; 1 left there until Redis answers")


def _redis_cut(fault_proxy, settings):
    """The cache behind a fault proxy that refuses connections (the real Redis outage)."""
    proxy = fault_proxy("127.0.0.1", 6379)
    proxy.set_mode("refuse")
    database = settings.CACHES["default"]["LOCATION"].rsplit("/", 1)[-1]
    cut = {"default": {**settings.CACHES["default"]}}
    cut["default"]["LOCATION"] = f"redis://127.0.0.1:{proxy.port}/{database}"
    return override_settings(CACHES=cut)
