"""The coalescer's own rules, without a broker: contract checks and the pause after failures.

Taking, acking, requeueing and rejecting against RabbitMQ with a real worker are in
``test_ingest_coalescing.py``.
"""

import hashlib
import logging

import pytest

from audit import coalescer as module
from audit.coalescer import Coalescer, contract_violation
from audit.tests.ingest_api_support import broker_port, broker_url_via
from testsupport.clock import fake_monotonic


@pytest.fixture
def clock(monkeypatch):
    return fake_monotonic(monkeypatch, module)


class Unreachable(Coalescer):
    """Counts attempts to reach the broker and fails them, as a broker that is down would."""

    attempts = 0

    def _bound_queue(self):
        self.attempts += 1
        raise ConnectionRefusedError("no broker in this test")


class Counting(Coalescer):
    attempts = 0

    def _bound_queue(self):
        self.attempts += 1
        return super()._bound_queue()


def test_a_broker_that_is_down_is_one_line_without_a_traceback(clock, fault_proxy, caplog):
    proxy = fault_proxy("127.0.0.1", broker_port())
    proxy.set_mode("refuse")
    taker = Counting(broker_url_via(proxy.port))
    for _ in range(2):
        assert taker.take(max_messages=5, max_events=100) == []
        clock.now += module.BACKOFF_SECONDS + 0.1  # past its back-off: the next take tries
    assert taker.attempts == 2

    [line] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert line.name == "audit.coalescer.broker"
    assert line.exc_info is None
    message = line.getMessage()
    assert message.startswith(
        "no extra ingest messages this time: broker error (OperationalError: "
    ), message
    assert "Connection refused" in message and "\n" not in message


def test_an_error_that_is_not_the_broker_keeps_its_traceback(clock, caplog):
    class Broken(Coalescer):
        def _bound_queue(self):
            raise KeyError("queue")

    assert Broken("amqp://unused").take(max_messages=5, max_events=100) == []
    [line] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert line.getMessage() == "no extra ingest messages this time"
    assert isinstance(line.exc_info[1], KeyError)


def test_settling_on_a_dead_channel_is_one_line_without_a_traceback(caplog):
    class DeadChannel:
        def ack(self, multiple=False):
            raise ConnectionResetError("[Errno 104] Connection reset by peer")

    taker = Coalescer("amqp://unused")
    extras = [module.Extra(message=DeadChannel(), task_id="t", request_id=None, batch=None)]
    for _ in range(2):
        taker.settle(extras[0], ack=True)
        taker.ack_all(extras)

    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in lines] == [
        "could not settle extra ingest message t: broker error "
        "(ConnectionResetError: [Errno 104] Connection reset by peer)",
        "could not ack 1 extra ingest messages: broker error "
        "(ConnectionResetError: [Errno 104] Connection reset by peer)",
    ]
    assert all(r.exc_info is None for r in lines)


def test_a_soft_time_limit_while_settling_stops_the_task_instead_of_being_shrugged_off():
    """Caught as a broker failure, the limit was discarded: the task ran on to the hard limit
    (code review). It is raised, and the connection dropped, so what the channel holds
    unsettled goes back to the queue."""
    from celery.exceptions import SoftTimeLimitExceeded

    class OutOfTime:
        def ack(self, multiple=False):
            raise SoftTimeLimitExceeded()

    taker = Coalescer("amqp://unused")
    closed = []
    taker.close = lambda: closed.append(True)
    extras = [module.Extra(message=OutOfTime(), task_id="t", request_id=None, batch=None)]

    with pytest.raises(SoftTimeLimitExceeded):
        taker.ack_all(extras)
    with pytest.raises(SoftTimeLimitExceeded):
        taker.settle(extras[0], ack=True)
    assert closed == [True, True]


def test_a_failed_transaction_pauses_taking_and_repeated_failures_double_the_pause(clock):
    coalescer = Unreachable("amqp://unused")
    coalescer.transaction_failed()  # pause 5 s
    assert coalescer.take(max_messages=5, max_events=100) == []
    assert coalescer.attempts == 0
    clock.now += 5.1
    coalescer.take(max_messages=5, max_events=100)
    assert coalescer.attempts == 1  # tried (and failed: that backs off 5 s on its own)

    clock.now += 5.1
    coalescer.transaction_failed()  # second failure in a row: 10 s
    clock.now += 9.0
    coalescer.take(max_messages=5, max_events=100)
    assert coalescer.attempts == 1
    clock.now += 1.1
    coalescer.take(max_messages=5, max_events=100)
    assert coalescer.attempts == 2


def test_the_pause_never_exceeds_five_minutes_and_a_success_resets_it(clock):
    coalescer = Unreachable("amqp://unused")
    for _ in range(20):
        coalescer.transaction_failed()
    assert coalescer._pause == module.PAUSE_MAX_SECONDS
    coalescer.transaction_succeeded()
    clock.now += module.PAUSE_MAX_SECONDS + 1
    coalescer.transaction_failed()
    clock.now += module.BACKOFF_SECONDS + 0.1
    coalescer.take(max_messages=5, max_events=100)
    assert coalescer.attempts == 1


def test_taking_is_off_when_the_limit_is_zero(clock):
    coalescer = Unreachable("amqp://unused")
    assert coalescer.take(max_messages=0, max_events=5000) == []
    assert coalescer.attempts == 0


@pytest.mark.parametrize(
    ("args", "kwargs", "broken"),
    [
        ([], {"tenant_id": 1, "events": [], "request_id": None}, False),
        ([], {"tenant_id": 1, "events": []}, False),
        ([1], {"tenant_id": 1, "events": []}, True),
        ([], {"tenant_id": 1}, True),
        ([], {"events": []}, True),
        ([], {"tenant_id": 1, "events": [], "colour": "red"}, True),
        ([], {"tenant_id": 1, "events": [], "submitted_by": "api_key:Ab12Cd34"}, False),
        ([], {"tenant_id": 1, "events": [], "submitted_by": 7}, True),
        ([], {"tenant_id": 1, "events": [], "submitted_by": "x" * 301}, True),
        ([], ["not", "an", "object"], True),
    ],
)
def test_contract_violation_names_what_breaks_the_message_contract(args, kwargs, broken):
    assert (contract_violation(args, kwargs) is not None) is broken


class _Poison:
    """A message of audit.ingest that breaks the contract (another task's name)."""

    headers = {"task": "not.ours", "id": "poison-1"}
    properties: dict = {}
    content_type = "application/json"
    body = b"[[], {}, {}]"
    delivery_info = {"routing_key": "audit.ingest"}
    rejected = None

    def reject(self, requeue):
        self.rejected = requeue


def test_a_rejected_extra_is_counted_and_logged_without_the_takers_request_id(monkeypatch):
    from audit import metrics_worker
    from traceledger.request_id import bound_request_id, current_request_id

    monkeypatch.setattr(module, "dead_letter_note", lambda **kwargs: None)
    seen = []
    monkeypatch.setattr(module.logger, "error", lambda *args: seen.append(current_request_id()))
    before = metrics_worker.BATCHES_REJECTED._value.get()
    message = _Poison()

    with bound_request_id("0123456789abcdef0123456789abcdef"):  # the task that took it
        assert Coalescer("amqp://unused")._extra(message) is None

    assert message.rejected is False  # rejected without requeue: RabbitMQ dead-letters it
    assert metrics_worker.BATCHES_REJECTED._value.get() == before + 1
    assert seen == [""]


@pytest.mark.parametrize(
    ("headers", "noted_as"),
    [
        ({"task": "not.ours", "id": "poison-3"}, "poison-3"),
        # No task header and no id (a foreign publisher): the drain stores such a letter under
        # a digest of its body and looks the note up there; it was noted under "".
        ({}, "sha256:" + hashlib.sha256(b'{"hello": 1}').hexdigest()),
    ],
)
def test_a_rejected_extras_note_is_left_under_the_id_the_drain_stores_it_by(
    monkeypatch, headers, noted_as
):
    from audit.services.dead_letters.messages import dead_letter_message_id

    noted = []
    monkeypatch.setattr(module, "dead_letter_note", lambda **kwargs: noted.append(kwargs))
    message = _Poison()
    message.headers, message.body = headers, b'{"hello": 1}'

    assert Coalescer("amqp://unused")._extra(message) is None

    [note] = noted
    assert note["task_id"] == noted_as == dead_letter_message_id(message)
    if not headers:  # the worker's consumer's words for the same message
        assert note["reason"] == "not a Celery task message (no task header)"


@pytest.mark.parametrize(("routing_key", "counted"), [("audit.ingest", 1), ("search.index", 0)])
def test_messages_celery_rejects_before_a_task_runs_count_for_the_ingest_queue(
    routing_key, counted
):
    from audit import metrics_worker, worker_signals

    message = _Poison()
    message.delivery_info = {"routing_key": routing_key}
    before = metrics_worker.BATCHES_REJECTED._value.get()

    worker_signals.count_rejected_message(message=message)
    worker_signals.count_unknown_task(message=message)

    assert metrics_worker.BATCHES_REJECTED._value.get() == before + 2 * counted


@pytest.mark.parametrize(
    ("task", "body", "logged_under"),
    [
        # breaks the contract (an unknown keyword), body readable: its own request's id
        ("audit.ingest_batch", b'[[], {"tenant_id": 1, "events": [], "request_id": "req-7", '
         b'"colour": 1}, {}]', "req-7"),
        # another task's message that carries a request id
        ("not.ours", b'[[], {"request_id": "req-8"}, {}]', "req-8"),
        # unreadable: no id to be had, and never the taker's
        ("audit.ingest_batch", b"not json", None),
    ],
)  # fmt: skip
def test_a_rejected_extra_is_logged_under_the_request_id_it_carries(
    monkeypatch, caplog, task, body, logged_under
):
    from traceledger.request_id import RequestIdLogFilter, bound_request_id

    monkeypatch.setattr(module, "dead_letter_note", lambda **kwargs: None)
    message = _Poison()
    message.headers = {"task": task, "id": "poison-2"}
    message.body = body
    caplog.handler.addFilter(RequestIdLogFilter())  # as the console handler: at emit time

    with bound_request_id("0123456789abcdef0123456789abcdef"):  # the task that took it
        assert Coalescer("amqp://unused")._extra(message) is None

    [line] = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert line.getMessage().startswith("extra ingest message poison-2 rejected: ")
    assert line.request_id == logged_under
