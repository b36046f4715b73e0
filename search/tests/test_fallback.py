"""Elasticsearch down or slow: search answers from PostgreSQL, marked degraded, and fast once
the breaker is open; the breaker state shows on /readyz and /metrics."""

import time

import pybreaker
import pytest

from search.tests.conftest import found

pytestmark = pytest.mark.django_db


def test_it_answers_from_postgresql_marked_degraded_when_elasticsearch_refuses(
    es_refused, indexed, search_get
):
    indexed(event_id="e-1", description="payroll exported")
    response = search_get("payroll")
    assert found(response) == ["e-1"]
    assert response.json()["backend"] == "postgresql"
    assert response.json()["degraded"] is True


def test_it_answers_within_a_second_without_asking_once_the_breaker_is_open(
    settings, fault_proxy, closed_port, indexed, search_get, closed_breaker
):
    proxy = fault_proxy("127.0.0.1", closed_port)
    proxy.set_mode("blackhole")  # accepts, never answers: the slow-ES case
    settings.ELASTICSEARCH_URL = f"http://127.0.0.1:{proxy.port}"
    settings.TRACELEDGER_SEARCH_TIMEOUT = 0.3
    indexed(event_id="e-1", description="payroll exported")

    for _ in range(closed_breaker.fail_max):
        started = time.monotonic()
        response = search_get("payroll")
        assert time.monotonic() - started >= 0.3  # waited for the timeout
        assert response.json()["degraded"] is True
    assert closed_breaker.current_state == pybreaker.STATE_OPEN

    started = time.monotonic()
    response = search_get("payroll")
    elapsed = time.monotonic() - started
    assert found(response) == ["e-1"]
    assert response.json() | {"results": None} == {
        "backend": "postgresql",
        "degraded": True,
        "next": None,
        "results": None,
    }
    assert elapsed < 1.0
    assert elapsed < settings.TRACELEDGER_SEARCH_TIMEOUT  # no wait on Elasticsearch at all


@pytest.mark.parametrize("status", [503, 429])
def test_an_overloaded_elasticsearch_opens_the_breaker_and_search_falls_back(
    fake_es, indexed, search_get, closed_breaker, status
):
    """429 (rejected executions, a tripped memory breaker) is an outage like a 503."""
    indexed(event_id="e-1", description="payroll exported")
    fake_es.answer_with(status)
    for _ in range(closed_breaker.fail_max):
        response = search_get("payroll")
        assert (found(response), response.json()["degraded"]) == (["e-1"], True)
    assert closed_breaker.current_state == pybreaker.STATE_OPEN
    asked = len(fake_es.requests)
    assert search_get("payroll").json()["degraded"] is True
    assert len(fake_es.requests) == asked  # not asked while open


def _fallback_lines(caplog) -> list:
    return [r for r in caplog.records if r.name == "search.selectors"]


def test_it_says_it_falls_back_once_not_on_every_search(es_refused, indexed, search_get, caplog):
    """Throttled like the other outage lines: one per 30 s per process, counting the rest."""
    indexed(event_id="e-1", description="payroll exported")
    for _ in range(6):  # refused three times, then the breaker is open
        assert search_get("payroll").json()["degraded"] is True

    [line] = _fallback_lines(caplog)
    assert line.levelname == "WARNING"
    assert line.getMessage().startswith(
        "search falls back to PostgreSQL: Elasticsearch unavailable (ConnectionError: "
    ), line.getMessage()
    assert line.exc_info is None


def test_a_query_elasticsearch_refuses_falls_back_as_the_bug_it_is(
    fake_es, indexed, search_get, caplog
):
    indexed(event_id="e-1", description="payroll exported")
    fake_es.answer_with(400, "query_shard_exception")
    response = search_get("payroll")
    assert (found(response), response.json()["degraded"]) == (["e-1"], True)

    [line] = _fallback_lines(caplog)
    assert line.levelname == "ERROR"
    assert "Elasticsearch refused the query (BadRequestError" in line.getMessage()
    assert line.exc_info  # a bug keeps its traceback


def test_a_bad_request_does_not_open_the_breaker(fake_es, indexed, search_get, closed_breaker):
    indexed(event_id="e-1", description="payroll exported")
    fake_es.answer_with(400, "query_shard_exception")
    for _ in range(closed_breaker.fail_max + 1):
        search_get("payroll")
    assert closed_breaker.current_state == pybreaker.STATE_CLOSED


def test_it_reports_search_down_on_readyz_while_the_breaker_is_open(
    client, fake_es, closed_breaker
):
    assert client.get("/readyz").json()["checks"]["search"] == "ok"
    closed_breaker.open()
    assert client.get("/readyz").json()["checks"]["search"] == "down"


def test_readyz_tries_elasticsearch_again_once_the_breaker_may_close(
    client, fake_es, closed_breaker, monkeypatch
):
    """Without it, /readyz said down until some search happened to close the breaker."""
    monkeypatch.setattr(closed_breaker, "_reset_timeout", 0.2)
    closed_breaker.open()
    assert client.get("/readyz").json()["checks"]["search"] == "down"
    time.sleep(0.3)
    assert client.get("/readyz").json()["checks"]["search"] == "ok"
    assert closed_breaker.current_state == pybreaker.STATE_CLOSED


def test_readyz_counts_a_failed_probe_against_the_breaker(client, es_refused, closed_breaker):
    for _ in range(closed_breaker.fail_max):
        assert client.get("/readyz").json()["checks"]["search"] == "down"
    assert closed_breaker.current_state == pybreaker.STATE_OPEN


def test_it_reports_search_disabled_on_readyz_without_elasticsearch(client, settings):
    settings.ELASTICSEARCH_URL = ""
    assert client.get("/readyz").json()["checks"]["search"] == "disabled"


def test_it_exposes_the_breaker_state_and_the_lag_on_metrics(
    client, es_refused, closed_breaker, tenant
):
    from audit.tests.factories import events_create

    events_create(tenant_id=tenant.pk, count=3)
    text = client.get("/metrics").content.decode()
    assert 'traceledger_search_breaker_state{name="elasticsearch"} 0.0' in text
    assert 'traceledger_search_index_lag_events{backend="postgresql"} 3.0' in text
    assert 'traceledger_search_index_lag_events{backend="elasticsearch"} 3.0' in text
    closed_breaker.open()
    text = client.get("/metrics").content.decode()
    assert 'traceledger_search_breaker_state{name="elasticsearch"} 2.0' in text


def test_it_counts_degraded_searches(client, es_refused, indexed, search_get):
    indexed(description="payroll")
    search_get("payroll")
    text = client.get("/metrics").content.decode()
    assert 'traceledger_search_requests_total{backend="postgresql",degraded="true"}' in text


def _follow(response, client):
    """The responses of every page from ``response`` on, following ``next``."""
    pages = [response]
    while pages[-1].json()["next"]:
        pages.append(client.get(pages[-1].json()["next"]))
        assert pages[-1].status_code == 200, pages[-1].content
    return pages


def test_a_search_that_began_degraded_pages_on_from_postgresql(
    es_refused, indexed, search_get, key_client
):
    """Its cursor is PostgreSQL's; Elasticsearch refusing it would leave only page 1."""
    indexed(count=3, description="payroll exported")
    client = key_client(scopes=["read"])
    pages = _follow(search_get("payroll", client=client, page_size=1), client)

    assert len(pages) == 3
    assert {page.json()["backend"] for page in pages} == {"postgresql"}
    assert all(page.json()["degraded"] is True for page in pages)
    ids = [event["id"] for page in pages for event in page.json()["results"]]
    assert len(set(ids)) == 3


def test_once_elasticsearch_is_back_a_degraded_search_still_ends_on_postgresql(
    fake_es, indexed, search_get, key_client, settings, closed_port
):
    indexed(count=2, description="payroll exported")
    client = key_client(scopes=["read"])
    real_url = settings.ELASTICSEARCH_URL
    settings.ELASTICSEARCH_URL = f"http://127.0.0.1:{closed_port}"
    first = search_get("payroll", client=client, page_size=1)
    assert first.json()["degraded"] is True
    settings.ELASTICSEARCH_URL = real_url

    second = client.get(first.json()["next"])

    assert second.status_code == 200
    assert (second.json()["backend"], second.json()["degraded"]) == ("postgresql", True)
    assert fake_es.search_bodies == []  # the page was not asked of Elasticsearch
    assert second.json()["results"][0]["id"] != first.json()["results"][0]["id"]


def test_a_text_without_a_word_for_postgresql_is_no_400_during_a_fallback(
    es_refused, indexed, search_get
):
    """Only PostgreSQL's own search refuses it: Elasticsearch may find ``🚀``, so the same
    query must not turn into a 400 because Elasticsearch is down."""
    indexed(event_id="rocket", description="launch 🚀")

    response = search_get("🚀")

    assert response.status_code == 200
    assert response.json()["degraded"] is True
    assert found(response) == []
