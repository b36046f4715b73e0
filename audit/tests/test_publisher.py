"""The publisher under broker faults: a TCP fault proxy between the app and real RabbitMQ."""

import logging
import threading
import time

import pybreaker
import pytest
from django.conf import settings
from django.db import OperationalError
from kombu import Connection

from audit import metrics, publisher
from audit.models import OutboxMessage
from audit.publisher import (
    BREAKER_FAIL_MAX,
    BrokerSkipped,
    PublishError,
    broker_breaker,
    get_publisher,
    publish_ingest_batch,
    publisher_reset,
)
from audit.tests.ingest_api_support import (
    broker_port,
    broker_url_via,
    ingest_messages,
    post_json,
    valid_event,
)
from audit.topology import topology_declare
from traceledger.queues import INGEST_QUEUE

TIMEOUT = 1.0
# What a request may take beyond the publish timeout: validation, the outbox insert, the
# test client — generous for a shared 2-core machine.
MARGIN = 1.0


@pytest.fixture(autouse=True)
def short_publish_timeout(settings, clean_broker):
    settings.TRACELEDGER_PUBLISH_TIMEOUT = TIMEOUT


@pytest.fixture
def broker_proxy(fault_proxy, settings):
    """RabbitMQ behind a fault proxy; the publisher connects through it."""
    proxy = fault_proxy("127.0.0.1", broker_port())
    settings.CELERY_BROKER_URL = broker_url_via(proxy.port)
    return proxy


@pytest.fixture
def ingest_client(key_client):
    return key_client(scopes=["ingest"])


def timed_post(client, body):
    started = time.monotonic()
    response = post_json(client, body)
    return response, time.monotonic() - started


@pytest.mark.parametrize("mode", ["refuse", "blackhole", "reset"])
def test_a_broker_that_is_down_or_hangs_still_gets_a_202_in_time_and_the_batch_lands_in_the_outbox(
    ingest_client, broker_proxy, mode, tenant
):
    broker_proxy.set_mode(mode)
    events = [valid_event(event_id="a"), valid_event(event_id="b")]
    response, elapsed = timed_post(ingest_client, events)
    assert response.status_code == 202
    assert elapsed < TIMEOUT + MARGIN, elapsed
    (row,) = OutboxMessage.objects.all()
    assert row.tenant_id == tenant.pk and row.event_count == 2
    assert [e["id"] for e in row.payload["events"]] == response.json()["ids"]
    assert [e["event_id"] for e in row.payload["events"]] == ["a", "b"]
    assert set(row.payload) == {"tenant_id", "events", "request_id", "submitted_by"}
    assert row.payload["submitted_by"].startswith("api_key:")
    assert row.last_error


def test_after_repeated_failures_the_breaker_skips_the_broker_entirely(ingest_client, broker_proxy):
    broker_proxy.set_mode("blackhole")
    for _ in range(BREAKER_FAIL_MAX):
        assert post_json(ingest_client, valid_event()).status_code == 202
    assert broker_breaker.current_state == pybreaker.STATE_OPEN
    skipped_before = metrics.PUBLISH_FAILURES.labels(reason="skipped")._value.get()

    response, elapsed = timed_post(ingest_client, valid_event())

    assert response.status_code == 202
    assert elapsed < 0.5, elapsed  # no waiting on the broker at all
    assert metrics.PUBLISH_FAILURES.labels(reason="skipped")._value.get() == skipped_before + 1
    assert OutboxMessage.objects.count() == BREAKER_FAIL_MAX + 1


def test_the_breaker_lets_a_trial_through_after_its_reset_timeout_and_closes_on_success(
    ingest_client, broker_proxy, monkeypatch
):
    broker_proxy.set_mode("refuse")
    for _ in range(BREAKER_FAIL_MAX):
        post_json(ingest_client, valid_event())
    assert broker_breaker.current_state == pybreaker.STATE_OPEN
    broker_proxy.set_mode("pass")
    monkeypatch.setattr(broker_breaker, "_reset_timeout", 0)

    response = post_json(ingest_client, valid_event())

    assert response.status_code == 202
    assert broker_breaker.current_state == pybreaker.STATE_CLOSED
    assert OutboxMessage.objects.count() == BREAKER_FAIL_MAX  # the trial went to RabbitMQ
    (message,) = ingest_messages(expect=1)
    assert message["kwargs"]["events"][0]["id"] == response.json()["ids"][0]


def _breaker_lines(caplog) -> list[tuple[str, str]]:
    return [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name == "audit.publisher"
        and "circuit breaker" in r.getMessage()
        and r.levelno >= logging.INFO
    ]


def test_it_logs_the_breaker_opening_once_and_closing_once(
    ingest_client, broker_proxy, monkeypatch, caplog
):
    broker_proxy.set_mode("refuse")
    with caplog.at_level(logging.DEBUG, logger="audit.publisher"):
        for _ in range(BREAKER_FAIL_MAX + 5):  # opens, then skips the broker
            post_json(ingest_client, valid_event())
        monkeypatch.setattr(broker_breaker, "_reset_timeout", 0)
        post_json(ingest_client, valid_event())  # a failed trial re-opens it: not news
        assert broker_breaker.current_state == pybreaker.STATE_OPEN
        opened = _breaker_lines(caplog)
        broker_proxy.set_mode("pass")
        post_json(ingest_client, valid_event())  # the trial succeeds
        assert broker_breaker.current_state == pybreaker.STATE_CLOSED
        publisher_reset()  # closing a closed breaker is not a state change either

    assert opened == [
        (
            "WARNING",
            f"RabbitMQ circuit breaker opened after {BREAKER_FAIL_MAX} failed publishes in a "
            "row: this process puts ingest batches in the outbox without trying the broker, "
            f"and retries it every {publisher.BREAKER_RESET_TIMEOUT} s (the outbox relay "
            "tries it on every run)",
        )
    ]
    assert _breaker_lines(caplog) == [
        *opened,
        ("INFO", "RabbitMQ circuit breaker closed: publishing to the broker again"),
    ]
    closed = [
        r for r in caplog.records if r.getMessage().startswith("RabbitMQ circuit breaker closed")
    ]
    assert closed[0].open_seconds >= 0 and closed[0].breaker == "rabbitmq-publish"


def test_it_logs_the_breaker_closing_when_the_relay_gets_through(broker_proxy, caplog):
    for _ in range(BREAKER_FAIL_MAX):
        publisher._breaker_record(PublishError("refused"))
    assert broker_breaker.current_state == pybreaker.STATE_OPEN
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="audit.publisher"):
        publisher.publish_tasks(
            task_name=publisher.INGEST_TASK_NAME,
            kwargs_list=[{"tenant_id": 0, "events": []}],
            force=True,
        )
    assert broker_breaker.current_state == pybreaker.STATE_CLOSED
    assert _breaker_lines(caplog) == [
        ("INFO", "RabbitMQ circuit breaker closed: publishing to the broker again")
    ]


def test_the_relays_failed_publishes_do_not_open_the_breaker_for_requests(broker_proxy, caplog):
    """A relay run (beat, or manage.py relay_outbox) failing a whole chunk on one dead
    connection opened the breaker and logged that requests skip the broker, where there
    were no requests; requests of a web process learn of the outage from their own."""
    broker_proxy.set_mode("refuse")
    with caplog.at_level(logging.DEBUG, logger="audit.publisher"):
        outcomes = publisher.publish_tasks(
            task_name=publisher.INGEST_TASK_NAME,
            kwargs_list=[{"tenant_id": 0, "events": []}] * (BREAKER_FAIL_MAX + 2),
            timeout=TIMEOUT,
            force=True,
        )

    assert all(isinstance(outcome, PublishError) for outcome in outcomes)
    assert broker_breaker.current_state == pybreaker.STATE_CLOSED
    assert broker_breaker.fail_counter == 0
    assert _breaker_lines(caplog) == []


def _never_confirming(thread, monkeypatch) -> None:
    """The thread's channel as a broker that takes messages and never confirms them."""
    never_confirms = type(
        "Silent", (), {"basic_publish": lambda self, *a, **k: None, "connection": None}
    )()
    never_confirms.connection = type(
        "Conn", (), {"drain_events": lambda self, timeout: time.sleep(timeout)}
    )()
    monkeypatch.setattr(thread, "_channel", never_confirms)
    monkeypatch.setattr(thread, "_conn", never_confirms)


def test_the_threads_confirm_timeout_says_it_is_not_the_requests_wait(settings, monkeypatch):
    """ "no confirm from RabbitMQ within 3.0s" read as contradicting the documented 1 s
    (TRACELEDGER_PUBLISH_TIMEOUT), which is the request's wait, long over by then."""
    settings.TRACELEDGER_PUBLISH_TIMEOUT = 1.0
    thread = get_publisher()
    _never_confirming(thread, monkeypatch)
    monkeypatch.setattr(thread, "confirm_timeout", 0.05)
    message = publisher.task_message(task_name=publisher.INGEST_TASK_NAME, kwargs={"events": []})

    with pytest.raises(PublishError) as error:
        thread._publish_confirmed([message])

    assert str(error.value) == (
        "no confirm from RabbitMQ within 0.05 s, the publisher thread's own wait for late "
        "confirms (a request waits TRACELEDGER_PUBLISH_TIMEOUT, 1 s, then puts its batch in "
        "the outbox)"
    )


def test_the_thread_waits_for_a_confirm_as_long_as_its_sender_does(monkeypatch):
    """The outbox relay waits 10 s for its large batches, but the thread gave up after its
    own 3 s and failed them (code review): it now waits as long as the longest sender."""
    thread = get_publisher()
    _never_confirming(thread, monkeypatch)
    monkeypatch.setattr(thread, "confirm_timeout", 0.05)
    message = publisher.task_message(task_name=publisher.INGEST_TASK_NAME, kwargs={"events": []})
    message.wait = 0.3

    started = time.monotonic()
    with pytest.raises(PublishError, match=r"within 0\.3 s"):
        thread._publish_confirmed([message])
    assert time.monotonic() - started >= 0.3


def test_it_answers_503_with_retry_after_only_when_the_database_refuses_too(
    ingest_client, broker_proxy, monkeypatch
):
    broker_proxy.set_mode("refuse")

    def database_down(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(OutboxMessage.objects, "create", database_down)
    response = post_json(ingest_client, valid_event())
    assert response.status_code == 503
    assert int(response["Retry-After"]) > 0
    assert response.json()["error"]["code"] == "unavailable"


def test_the_database_is_not_written_while_the_broker_confirms(
    ingest_client, django_assert_max_num_queries
):
    post_json(ingest_client, valid_event())  # warm up: key look-up caches, connection
    with django_assert_max_num_queries(1):  # at most the API key look-up
        response = post_json(ingest_client, valid_event())
    assert response.status_code == 202
    assert not OutboxMessage.objects.exists()


def test_concurrent_requests_share_confirm_round_trips():
    """Amortised confirms: many messages published by many threads, fewer confirm waits."""
    observed_before = _publish_observations()
    payloads = [{"tenant_id": 1, "events": [], "request_id": str(i)} for i in range(200)]
    errors: list[BaseException] = []

    def publish(chunk):
        for payload in chunk:
            try:
                publish_ingest_batch(payload)
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=publish, args=(payloads[i::20],)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert len(ingest_messages(expect=200)) == 200
    confirm_waits = _publish_observations() - observed_before
    assert 0 < confirm_waits < 200


def _publish_observations() -> float:
    for metric in metrics.PUBLISH_SECONDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return sample.value
    return 0.0


def test_publish_raises_instead_of_hanging_when_the_broker_blackholes(broker_proxy):
    broker_proxy.set_mode("blackhole")
    started = time.monotonic()
    with pytest.raises(PublishError):
        publish_ingest_batch({"tenant_id": 1, "events": [], "request_id": None})
    assert time.monotonic() - started < TIMEOUT + 0.3


def test_a_broker_cut_under_a_live_connection_is_survived_by_reconnecting(broker_proxy):
    publish_ingest_batch({"tenant_id": 1, "events": [], "request_id": "first"})
    broker_proxy.set_mode("reset")  # cuts the live connection
    with pytest.raises(PublishError):
        publish_ingest_batch({"tenant_id": 1, "events": [], "request_id": "lost"})
    broker_proxy.set_mode("pass")
    publish_ingest_batch({"tenant_id": 1, "events": [], "request_id": "second"})
    request_ids = [m["kwargs"]["request_id"] for m in ingest_messages(expect=2)]
    assert request_ids == ["first", "second"]


def test_a_request_that_gave_up_is_not_published_late(broker_proxy, settings):
    """The cancelled copy stays unpublished: the outbox copy is then the only one."""
    broker_proxy.set_mode("blackhole")
    with pytest.raises(PublishError):
        publish_ingest_batch({"tenant_id": 1, "events": [], "request_id": "slow"}, timeout=0.2)
    # Queued behind the stuck connect, then given up on: cancelled before it was sent.
    with pytest.raises(PublishError):
        publish_ingest_batch({"tenant_id": 1, "events": [], "request_id": "gave-up"}, timeout=0.2)
    broker_proxy.set_mode("pass")
    publisher_reset()
    publish_ingest_batch({"tenant_id": 1, "events": [], "request_id": "after"})
    request_ids = [m["kwargs"]["request_id"] for m in ingest_messages(expect=3, timeout=2)]
    assert "gave-up" not in request_ids and "after" in request_ids


def test_while_the_breaker_is_open_publish_raises_broker_skipped_at_once(broker_proxy):
    broker_proxy.set_mode("refuse")
    for _ in range(BREAKER_FAIL_MAX):
        with pytest.raises(PublishError):
            publish_ingest_batch({"tenant_id": 1, "events": [], "request_id": None})
    started = time.monotonic()
    with pytest.raises(BrokerSkipped):
        publish_ingest_batch({"tenant_id": 1, "events": [], "request_id": None})
    assert time.monotonic() - started < 0.05


def test_a_forked_process_gets_its_own_publisher(monkeypatch):
    first = get_publisher()
    assert get_publisher() is first
    monkeypatch.setattr(publisher.os, "getpid", lambda: first.pid + 1)
    second = get_publisher()
    assert second is not first and second.pid == first.pid + 1


def test_the_publisher_declares_the_ingest_topology_when_it_connects(settings):
    with Connection(settings.CELERY_BROKER_URL) as conn:
        channel = conn.default_channel
        channel.queue_delete("audit.ingest.dlq")
    publisher_reset()
    publish_ingest_batch({"tenant_id": 1, "events": [], "request_id": None})
    with Connection(settings.CELERY_BROKER_URL) as conn:
        _, count, _ = conn.default_channel.queue_declare("audit.ingest.dlq", passive=True)
    assert count == 0


def test_readyz_reports_the_broker_down_while_the_breaker_is_open(client, db, broker_proxy):
    broker_proxy.set_mode("refuse")
    for _ in range(BREAKER_FAIL_MAX):
        with pytest.raises(PublishError):
            publish_ingest_batch({"tenant_id": 1, "events": [], "request_id": None})
    report = client.get("/readyz").json()
    assert report["checks"]["broker"] == "down"
    assert report["status"] == "degraded"


def test_a_publisher_whose_thread_died_is_replaced():
    first = get_publisher()
    first.stop()
    first._thread.join(5)
    second = get_publisher()
    assert second is not first and second.is_alive()
    publish_ingest_batch({"tenant_id": 1, "events": [], "request_id": "after"})
    assert ingest_messages(expect=1)[0]["kwargs"]["request_id"] == "after"


def test_concurrent_requests_all_give_up_in_time_on_a_hanging_broker(broker_proxy):
    broker_proxy.set_mode("blackhole")
    durations: list[float] = []
    outcomes: list[str] = []

    def publish(i):
        started = time.monotonic()
        try:
            publish_ingest_batch({"tenant_id": 1, "events": [], "request_id": str(i)})
            outcomes.append("confirmed")
        except BrokerSkipped:
            outcomes.append("skipped")
        except PublishError:
            outcomes.append("failed")
        durations.append(time.monotonic() - started)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(durations) == 8 and "confirmed" not in outcomes
    assert max(durations) < TIMEOUT + 0.5, durations


def test_accepted_events_are_counted_by_where_they_went(ingest_client, broker_proxy):
    broker = metrics.EVENTS_ACCEPTED.labels(path="broker")
    outbox = metrics.EVENTS_ACCEPTED.labels(path="outbox")
    writes = metrics.OUTBOX_WRITES
    before = (broker._value.get(), outbox._value.get(), writes._value.get())
    post_json(ingest_client, [valid_event(), valid_event()])
    broker_proxy.set_mode("refuse")
    post_json(ingest_client, [valid_event(), valid_event(), valid_event()])
    after = (broker._value.get(), outbox._value.get(), writes._value.get())
    assert tuple(a - b for a, b in zip(after, before, strict=True)) == (2, 3, 1)


def test_a_message_rabbitmq_cannot_route_is_a_failure_not_a_silent_loss(settings):
    """If audit.ingest vanished under a live connection, the confirm alone would say "ok"."""
    publish_ingest_batch({"tenant_id": 1, "events": [], "request_id": "before"})
    # Celery's native delayed delivery adds "#.audit.ingest"; both keys must go.
    keys = ["audit.ingest", "#.audit.ingest"]
    with Connection(settings.CELERY_BROKER_URL) as conn:
        for key in keys:
            conn.default_channel.queue_unbind("audit.ingest", exchange="audit", routing_key=key)
    try:
        with pytest.raises(PublishError, match="route"):
            publish_ingest_batch({"tenant_id": 1, "events": [], "request_id": "lost"})
    finally:
        with Connection(settings.CELERY_BROKER_URL) as conn:
            for key in keys:
                conn.default_channel.queue_bind("audit.ingest", exchange="audit", routing_key=key)
    publisher_reset()
    publish_ingest_batch({"tenant_id": 1, "events": [], "request_id": "after"})
    request_ids = [m["kwargs"]["request_id"] for m in ingest_messages(expect=2)]
    assert request_ids == ["before", "after"]


def test_a_failed_publish_is_logged_with_the_request_it_failed_for(broker_proxy, caplog):
    """The line comes from the publisher thread, which serves many requests: it names them,
    so that an operator can tell which request's events went to the outbox."""
    broker_proxy.set_mode("refuse")

    with (
        caplog.at_level(logging.WARNING, logger="audit.publisher"),
        pytest.raises(PublishError),
    ):
        publish_ingest_batch({"tenant_id": 1, "events": [], "request_id": "req-outbox-1"})

    [line] = [r for r in caplog.records if r.getMessage() == "publish to RabbitMQ failed"]
    assert line.request_ids == ["req-outbox-1"]
    assert line.request_id == "req-outbox-1"


@pytest.mark.django_db
def test_a_message_rabbitmq_cannot_route_fails_with_a_line_saying_so(caplog):
    """The ingest queue deleted under a connected publisher: RabbitMQ returns the message
    (mandatory), the request goes to the outbox, and the log says why."""
    publish_ingest_batch({"tenant_id": 1, "events": [], "request_id": "r-1"})  # connected
    ingest_messages(expect=1)
    with Connection(settings.CELERY_BROKER_URL) as conn:
        conn.default_channel.queue_delete(INGEST_QUEUE.name)
    try:
        with pytest.raises(PublishError, match="could not route"):
            publish_ingest_batch({"tenant_id": 1, "events": [], "request_id": "r-2"})
        [line] = [r for r in caplog.records if r.getMessage() == "publish to RabbitMQ failed"]
        assert line.error.startswith("unroutable: ")
        assert line.request_ids == ["r-2"]
    finally:
        with Connection(settings.CELERY_BROKER_URL) as conn:
            topology_declare(conn)
