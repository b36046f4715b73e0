"""Fixtures of the search tests: indexed events, a closed breaker, a closed port."""

import socket

import pytest

from audit.tests.factories import events_create
from search.backends.postgresql import PostgresBackend
from search.breaker import es_breaker


@pytest.fixture(autouse=True)
def closed_breaker():
    """Breakers are per process: every test starts (and leaves) it closed."""
    es_breaker.close()
    yield es_breaker
    es_breaker.close()


@pytest.fixture
def indexed(tenant):
    """indexed(count=1, tenant_id=..., **overrides) → events stored and in the PG index."""

    def make(count: int = 1, tenant_id: int | None = None, per_event=None, **overrides):
        events = events_create(
            tenant_id=tenant_id or tenant.pk, count=count, per_event=per_event, **overrides
        )
        PostgresBackend().index_events(event_ids=[str(e.id) for e in events])
        return events

    return make


@pytest.fixture
def closed_port() -> int:
    """A local TCP port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def search_get(key_client):
    """search_get(q, client=None, **params) → the response of GET /audit-events/search."""
    default = {}

    def get(q=None, client=None, **params):
        if client is None:
            if "client" not in default:
                default["client"] = key_client(scopes=["read"])
            client = default["client"]
        if q is not None:
            params["q"] = q
        return client.get("/api/v1/audit-events/search", params)

    return get


def found(response) -> list[str]:
    """The ``event_id``s of a search response, in order."""
    assert response.status_code == 200, response.content
    return [event["event_id"] for event in response.json()["results"]]


@pytest.fixture
def fake_es(settings):
    """A recording stand-in for Elasticsearch (see fake_elasticsearch.py), configured."""
    from search.tests.fake_elasticsearch import FakeElasticsearch

    fake = FakeElasticsearch().start()
    settings.ELASTICSEARCH_URL = fake.url
    yield fake
    fake.stop()


@pytest.fixture
def es_refused(settings, closed_port) -> str:
    """ELASTICSEARCH_URL pointing at a closed port."""
    settings.ELASTICSEARCH_URL = f"http://127.0.0.1:{closed_port}"
    return settings.ELASTICSEARCH_URL


class _Requests(list):
    """(method, path, request_timeout) of each request the Elasticsearch client sent."""

    blackhole = False


@pytest.fixture
def es_requests(monkeypatch):
    """Records every request of the Elasticsearch client at its transport, with the timeout
    it would wait. ``blackhole = True``: each one times out at once, as against a cluster
    that accepts connections and never answers after that timeout (tests say which calls
    are made and how long each may wait, without waiting). Otherwise they go through."""
    from urllib.parse import urlsplit

    from elastic_transport import ConnectionTimeout, Transport

    real = Transport.perform_request
    requests = _Requests()

    def perform_request(transport, method, target, **kwargs):
        requests.append((method, urlsplit(target).path, kwargs.get("request_timeout")))
        if requests.blackhole:
            raise ConnectionTimeout("Connection timed out (black hole, simulated)")
        return real(transport, method, target, **kwargs)

    monkeypatch.setattr(Transport, "perform_request", perform_request)
    return requests
