"""Admission control: POST answers 429 while audit.ingest is over its backlog limit (real
RabbitMQ, no worker consuming, so the queue only grows until the test drains it)."""

import time

import pytest
from kombu import Connection

from audit import metrics
from audit.publisher import get_publisher
from audit.tests.ingest_api_support import (
    ingest_messages,
    post_json,
    real_broker_url,
    valid_event,
)
from traceledger.queues import INGEST_QUEUE_NAME

LIMIT = 2


@pytest.fixture(autouse=True)
def small_backlog_limit(settings, clean_broker):
    settings.TRACELEDGER_INGEST_MAX_BACKLOG = LIMIT
    settings.TRACELEDGER_INGEST_BACKLOG_PROBE = 0  # read the depth after every publish


@pytest.fixture
def ingest_client(key_client):
    return key_client(scopes=["ingest"])


def queue_depth() -> int:
    with Connection(real_broker_url()) as conn:
        return conn.default_channel.queue_declare(INGEST_QUEUE_NAME, passive=True).message_count


def wait_for_reading(predicate, timeout: float = 5.0) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reading = get_publisher().ingest_backlog()
        if reading is not None and predicate(reading):
            return reading
        time.sleep(0.02)
    return get_publisher().ingest_backlog()


def counter(metric) -> float:
    return metric._value.get()


def test_posts_are_refused_with_429_while_the_queue_is_over_the_limit_and_admitted_again_after(
    ingest_client,
):
    for n in range(LIMIT):
        assert post_json(ingest_client, valid_event(event_id=f"e{n}")).status_code == 202
    assert wait_for_reading(lambda depth: depth >= LIMIT) == LIMIT
    refused_before = counter(metrics.REFUSED_FOR_BACKLOG)

    response = post_json(ingest_client, [valid_event(event_id="late-1"), valid_event()])

    assert response.status_code == 429
    assert response["Retry-After"] == "1"
    error = response.json()["error"]
    assert error["code"] == "overloaded"
    assert f"holds {LIMIT} requests" in error["message"]
    assert queue_depth() == LIMIT  # nothing of the refused request was published
    assert counter(metrics.REFUSED_FOR_BACKLOG) == refused_before + 1

    # The workers catch up: the idle publisher re-reads the depth and admits again.
    assert len(ingest_messages(expect=LIMIT)) == LIMIT
    # Below the limit is enough: the idle thread stops re-reading once it admits again (a
    # reading taken between the two gets is 1, and stays so until the next publish).
    reading = wait_for_reading(lambda depth: depth < LIMIT)
    assert reading is not None and reading < LIMIT
    response = post_json(ingest_client, [valid_event(event_id="late-1")])
    assert response.status_code == 202
    (message,) = ingest_messages(expect=1)
    assert [e["event_id"] for e in message["kwargs"]["events"]] == ["late-1"]


def test_the_limit_set_to_zero_turns_admission_control_off(ingest_client, settings):
    settings.TRACELEDGER_INGEST_MAX_BACKLOG = 0
    for n in range(LIMIT + 2):
        assert post_json(ingest_client, valid_event(event_id=f"e{n}")).status_code == 202
    assert get_publisher().ingest_backlog() is None
    assert queue_depth() == LIMIT + 2


def test_a_stale_reading_admits(ingest_client, monkeypatch):
    for n in range(LIMIT):
        assert post_json(ingest_client, valid_event(event_id=f"e{n}")).status_code == 202
    assert wait_for_reading(lambda depth: depth >= LIMIT) == LIMIT
    publisher = get_publisher()
    # As if the thread had been stuck since its last reading (the broker hangs, say).
    monkeypatch.setattr(publisher, "_backlog", (LIMIT, time.monotonic() - 60))
    assert publisher.ingest_backlog() is None
    assert post_json(ingest_client, valid_event(event_id="late")).status_code == 202


def test_the_refusal_comes_before_the_body_is_read(ingest_client):
    for n in range(LIMIT):
        assert post_json(ingest_client, valid_event(event_id=f"e{n}")).status_code == 202
    assert wait_for_reading(lambda depth: depth >= LIMIT) == LIMIT
    # An invalid body would be a 400 if it were parsed: refusing first spends no CPU on it.
    response = post_json(ingest_client, b"{not json")
    assert response.status_code == 429


def test_anonymous_requests_still_get_401_not_429(api_client, ingest_client):
    for n in range(LIMIT):
        assert post_json(ingest_client, valid_event(event_id=f"e{n}")).status_code == 202
    assert wait_for_reading(lambda depth: depth >= LIMIT) == LIMIT
    assert post_json(api_client, valid_event()).status_code == 401


def test_a_refusal_for_the_backlog_does_not_count_against_the_clients_rate_limit(
    ingest_client, settings, monkeypatch
):
    """A client obeying Retry-After: 1 ran into its own rate limit next (API client QA)."""
    import random
    import types

    import django_ratelimit.core

    settings.TRACELEDGER_RATELIMIT_INGEST = "3/m"
    # A window of its own: keys' prefixes (their buckets) may repeat in another run.
    later = time.time() + random.randrange(10**6, 10**9)
    monkeypatch.setattr(django_ratelimit.core, "time", types.SimpleNamespace(time=lambda: later))
    for n in range(LIMIT):
        assert post_json(ingest_client, valid_event(event_id=f"e{n}")).status_code == 202
    assert wait_for_reading(lambda depth: depth >= LIMIT) == LIMIT

    refused = [post_json(ingest_client, valid_event()) for _ in range(5)]
    assert {r.json()["error"]["code"] for r in refused} == {"overloaded"}

    ingest_messages(expect=LIMIT)  # the workers caught up
    assert wait_for_reading(lambda depth: depth == 0) == 0
    # Two of the three posts a minute were spent; the five refusals cost nothing.
    assert post_json(ingest_client, valid_event(event_id="after")).status_code == 202
