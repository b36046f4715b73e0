"""The coalescer's own rules, without a broker: contract checks and the pause after failures.

Taking, acking, requeueing and rejecting against RabbitMQ with a real worker are in
``test_ingest_coalescing.py``.
"""

import pytest

from audit import coalescer as module
from audit.coalescer import Coalescer, contract_violation
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
        ([], ["not", "an", "object"], True),
    ],
)
def test_contract_violation_names_what_breaks_the_message_contract(args, kwargs, broken):
    assert (contract_violation(args, kwargs) is not None) is broken
