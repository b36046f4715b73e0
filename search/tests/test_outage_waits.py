"""How long indexing may hold a worker process while Elasticsearch does not answer.

The index task of every ingest shares the worker processes with ``audit.ingest``; a bulk
that waited the 30 s write timeout on a black-holed cluster, and a half-open trial doing so
again every 30 s in each process, stalled ingestion (README: ingestion never waits on
Elasticsearch). These tests say which calls are made and with what timeout, rather than
timing them: the transport is replaced by one that records each request and, for a black
hole, times it out at once.
"""

import pybreaker
import pytest

from audit.tests.factories import events_create
from search.backends.elasticsearch import WRITE_TIMEOUT
from search.documents import INDEX_ALIAS
from search.services import events_index, search_sweep

pytestmark = pytest.mark.django_db


@pytest.fixture
def black_hole(settings, es_requests, closed_port):
    settings.ELASTICSEARCH_URL = f"http://127.0.0.1:{closed_port}"  # never reached
    es_requests.blackhole = True
    return es_requests


def _index(tenant, count: int = 2) -> None:
    """What the index task of one ingest does."""
    events = events_create(tenant_id=tenant.pk, count=count)
    events_index(
        tenant_id=tenant.pk,
        event_ids=[str(e.id) for e in events],
        first_sequence=events[0].sequence,
    )


def _bulks(requests) -> list:
    return [r for r in requests if r[1].endswith("/_bulk")]


def test_the_index_task_of_an_ingest_waits_the_index_timeout_not_the_write_timeout(
    settings, black_hole, tenant
):
    settings.TRACELEDGER_SEARCH_INDEX_TIMEOUT = 0.7
    _index(tenant)
    assert [timeout for _, _, timeout in black_hole] == [0.7]
    assert len(_bulks(black_hole)) == 1


def test_the_index_task_asks_nothing_while_the_breaker_is_open(black_hole, tenant, closed_breaker):
    for _ in range(closed_breaker.fail_max):
        _index(tenant)
    assert closed_breaker.current_state == pybreaker.STATE_OPEN
    asked = len(black_hole)

    for _ in range(5):
        _index(tenant)

    assert len(black_hole) == asked


def test_once_the_reset_time_is_up_the_trial_is_a_probe_with_the_search_timeout(
    settings, black_hole, tenant, closed_breaker, monkeypatch
):
    """Not the bulk: on a black hole, a trial waits its own timeout, in every process."""
    settings.TRACELEDGER_SEARCH_TIMEOUT = 0.4
    closed_breaker.open()
    monkeypatch.setattr(closed_breaker, "_reset_timeout", 0)  # the reset time is up

    _index(tenant)

    assert black_hole == [("GET", "/", 0.4)]
    assert closed_breaker.current_state == pybreaker.STATE_OPEN


def test_a_probe_that_is_answered_closes_the_breaker_and_the_bulk_follows(
    settings, fake_es, es_requests, tenant, closed_breaker, monkeypatch
):
    from search.backends.elasticsearch import alias_ensure

    alias_ensure()
    settings.TRACELEDGER_SEARCH_TIMEOUT = 0.4
    settings.TRACELEDGER_SEARCH_INDEX_TIMEOUT = 0.7
    closed_breaker.open()
    monkeypatch.setattr(closed_breaker, "_reset_timeout", 0)
    es_requests.clear()

    _index(tenant)

    assert [(path, timeout) for _, path, timeout in es_requests] == [("/", 0.4), ("/_bulk", 0.7)]
    assert closed_breaker.current_state == pybreaker.STATE_CLOSED
    assert len(fake_es.documents(INDEX_ALIAS)) == 2


def test_the_sweep_asks_with_the_search_timeout_before_anything_that_waits_longer(
    settings, black_hole, tenant
):
    settings.TRACELEDGER_SEARCH_TIMEOUT = 0.4
    events_create(tenant_id=tenant.pk, count=2)

    assert search_sweep() == {"postgresql": 2}

    assert black_hole == [("GET", "/", 0.4)]


def test_the_sweep_writes_with_the_write_timeout_once_elasticsearch_answers(
    settings, fake_es, es_requests, tenant
):
    settings.TRACELEDGER_SEARCH_TIMEOUT = 0.4
    events_create(tenant_id=tenant.pk, count=2)

    assert search_sweep() == {"postgresql": 2, "elasticsearch": 2}

    assert es_requests[0] == ("GET", "/", 0.4)
    assert {timeout for _, _, timeout in es_requests[1:]} == {WRITE_TIMEOUT}
    assert len(_bulks(es_requests)) == 1
